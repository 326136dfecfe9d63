package submit

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batchzip"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// Archive builds are bounded per instance and per user: each one holds a
// storage read and a client connection for as long as the client takes to
// download, so one user looping over downloads cannot take every slot.
const (
	archivesPerInstance = 8
	archivesPerUser     = 2
	// archiveRetryAfter is the Retry-After of a refused build, in seconds:
	// about what a 30-image archive takes to download.
	archiveRetryAfter = 10
)

// handleArchive streams the caller's batch as a ZIP (see batchzip): the images
// made when the rows are read, then manifest.json and results.csv. Nothing is
// held whole in memory; a client that leaves stops the build. A failure before
// the first byte is a problem document; after it, the response is cut so the
// client gets an unfinished archive, never one that looks complete.
func (s *server) handleArchive() http.Handler {
	slots := newArchiveSlots(archivesPerInstance, archivesPerUser)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		m, err := s.manifest(r)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		obs.Annotate(ctx, "batchId", m.BatchID)
		out := &zipResponse{w: w, filename: m.BatchID + ".zip"}
		if r.Method == http.MethodHead {
			// The headers only: building an archive nobody reads costs every image's read.
			out.start()
			return
		}
		p, _ := auth.From(ctx)
		if !slots.acquire(p.UserID) {
			problem.Write(w, r, &problem.Error{Code: problem.RateLimited, RetryAfter: archiveRetryAfter,
				Detail: "too many archives are being built for this account or on this server; retry after the delay in Retry-After",
				Extra:  map[string]any{"maxArchives": archivesPerUser}})
			return
		}
		defer slots.release(p.UserID)
		at := s.now().UTC()
		rows, err := s.Store.Rows(ctx, m)
		if err != nil {
			problem.Write(w, r, fmt.Errorf("submit: reading the rows: %w", err))
			return
		}
		b := batchzip.Batch{Manifest: m, Rows: rows, At: at, Link: func(row, variant int) string { return s.assetLink(r, m, row, variant) }}
		err = batchzip.Write(ctx, out, b, s.openImage)
		switch {
		case err == nil:
		case !out.started:
			problem.Write(w, r, err)
		case ctx.Err() != nil:
			// The client left (or the request's time ran out): nobody reads on.
			obs.Logger(ctx).Info("submit: archive abandoned", "bytes", out.n, "error", err)
		default:
			obs.Logger(ctx).Error("submit: archive cut after it started", "bytes", out.n, "code", problem.CodeOf(err), "error", err)
			panic(http.ErrAbortHandler)
		}
	})
}

// openImage opens a stored image for the archive.
func (s *server) openImage(ctx context.Context, object string) (batchzip.Image, error) {
	body, a, err := s.Store.OpenObject(ctx, object)
	if err != nil {
		return batchzip.Image{}, err
	}
	return batchzip.Image{Body: body, ContentType: a.ContentType, Modified: a.Updated}, nil
}

// zipResponse sends the archive's headers with its first byte, so that until
// then a failure can still be answered as a problem document.
type zipResponse struct {
	w        http.ResponseWriter
	filename string
	started  bool
	n        int64
}

func (z *zipResponse) start() {
	z.started = true
	h := z.w.Header()
	h.Set("Content-Type", "application/zip")
	h.Set("Content-Disposition", `attachment; filename="`+z.filename+`"`)
	h.Set("Cache-Control", "private, no-store")
	z.w.WriteHeader(http.StatusOK)
}

func (z *zipResponse) Write(p []byte) (int, error) {
	if !z.started {
		z.start()
	}
	n, err := z.w.Write(p)
	z.n += int64(n)
	return n, err
}

// archiveSlots counts the archives being built on this instance, in all and
// per user. Users without a build in progress have no entry.
type archiveSlots struct {
	total, perUser int
	mu             sync.Mutex
	building       int
	users          map[string]int
}

func newArchiveSlots(total, perUser int) *archiveSlots {
	return &archiveSlots{total: total, perUser: perUser, users: map[string]int{}}
}

// acquire counts one more build of user, unless the instance or the user is
// at the cap.
func (a *archiveSlots) acquire(user string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.building >= a.total || a.users[user] >= a.perUser {
		return false
	}
	a.building++
	a.users[user]++
	return true
}

// release counts one build of user less.
func (a *archiveSlots) release(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.building--
	if a.users[user] <= 1 {
		delete(a.users, user)
		return
	}
	a.users[user]--
}
