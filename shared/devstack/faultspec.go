package devstack

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StorageFaults is what LOCAL_STORAGE_FAULTS asks of the storage emulator,
// e.g. "error=0.1,lost=0.05,latency=50ms".
type StorageFaults struct {
	// Error is the share of requests failed before they reach the emulator,
	// answered 503 or 429.
	Error float64
	// Lost is the share of requests the emulator applies whose answer is then
	// lost: a 503 or a connection reset.
	Lost float64
	// Latency delays every request.
	Latency time.Duration
	// Seed seeds the draws; zero lets the caller pick one.
	Seed uint64
}

// IsZero reports whether nothing is injected.
func (s StorageFaults) IsZero() bool { return s.Error == 0 && s.Lost == 0 && s.Latency == 0 }

// String is the spec in the form ParseStorageFaults reads.
func (s StorageFaults) String() string {
	var parts []string
	if s.Error != 0 {
		parts = append(parts, "error="+strconv.FormatFloat(s.Error, 'g', -1, 64))
	}
	if s.Lost != 0 {
		parts = append(parts, "lost="+strconv.FormatFloat(s.Lost, 'g', -1, 64))
	}
	if s.Latency != 0 {
		parts = append(parts, "latency="+s.Latency.String())
	}
	if s.Seed != 0 {
		parts = append(parts, "seed="+strconv.FormatUint(s.Seed, 10))
	}
	return strings.Join(parts, ",")
}

// ParseStorageFaults reads a comma-separated list of key=value settings:
// error and lost are shares between 0 and 1, latency a Go duration, seed an
// unsigned integer. An empty spec injects nothing. Each mistake is named.
func ParseStorageFaults(spec string) (StorageFaults, error) {
	var (
		out  StorageFaults
		errs []error
		seen = map[string]bool{}
	)
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key, value, ok := strings.Cut(item, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || value == "" {
			errs = append(errs, fmt.Errorf("%q: want key=value", item))
			continue
		}
		if seen[key] {
			errs = append(errs, fmt.Errorf("%s is given twice", key))
			continue
		}
		seen[key] = true
		switch key {
		case "error", "lost":
			f, err := strconv.ParseFloat(value, 64)
			if err != nil || f < 0 || f > 1 {
				errs = append(errs, fmt.Errorf("%s=%s: want a share between 0 and 1, such as 0.05", key, value))
				continue
			}
			if key == "error" {
				out.Error = f
			} else {
				out.Lost = f
			}
		case "latency":
			d, err := time.ParseDuration(value)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Errorf("latency=%s: want a duration such as 50ms", value))
				continue
			}
			out.Latency = d
		case "seed":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("seed=%s: want an unsigned integer", value))
				continue
			}
			out.Seed = n
		default:
			errs = append(errs, fmt.Errorf("unknown setting %q (known: error, lost, latency, seed)", key))
		}
	}
	if len(errs) > 0 {
		return StorageFaults{}, errors.Join(errs...)
	}
	if out.Error+out.Lost > 1 {
		return StorageFaults{}, fmt.Errorf("error and lost add up to more than 1 (%g)", out.Error+out.Lost)
	}
	return out, nil
}

// Apply sets s's error share, lost share and latency on f.
func (f *Faults) Apply(s StorageFaults) {
	f.SetFailures(s.Error, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	f.SetLostAnswers(s.Lost)
	f.SetLatency(s.Latency)
}
