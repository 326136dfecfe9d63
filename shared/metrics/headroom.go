package metrics

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory is the process's memory against its limit.
type Memory struct {
	InUse uint64 // heap in use plus stacks
	Limit uint64 // 0 when unlimited
	Ratio float64
}

// cgroupLimit is read once: a container's limit does not change under it.
var cgroupLimit = readCgroupLimit()

var (
	cacheMu  sync.Mutex
	cached   Memory
	cachedAt time.Time
)

// RecentHeadroom is Headroom at most half a second old: reading memory
// statistics pauses the world briefly, which a check on every new stream
// should not multiply.
func RecentHeadroom() Memory {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if time.Since(cachedAt) > 500*time.Millisecond {
		cached, cachedAt = Headroom(), time.Now()
	}
	return cached
}

// Headroom reports how much of the memory limit is free: the lower of the
// container's cgroup limit and GOMEMLIMIT. Cloud Run sets the cgroup limit to
// the instance's memory.
func Headroom() Memory {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := Memory{InUse: ms.HeapInuse + ms.StackInuse, Limit: cgroupLimit}
	if gl := debug.SetMemoryLimit(-1); gl > 0 && gl < math.MaxInt64 && (m.Limit == 0 || uint64(gl) < m.Limit) {
		m.Limit = uint64(gl)
	}
	m.Ratio = ratio(m.InUse, m.Limit)
	return m
}

func ratio(inUse, limit uint64) float64 {
	if limit == 0 {
		return 1
	}
	return max(0, 1-float64(inUse)/float64(limit))
}

// readCgroupLimit reads cgroup v2's memory.max, or v1's limit_in_bytes.
func readCgroupLimit() uint64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0
		}
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n < 1<<60 {
			return n
		}
	}
	return 0
}
