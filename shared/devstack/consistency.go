package devstack

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
)

// objectLocks makes the emulator as consistent as Cloud Storage: requests on
// the same object are serialised (uploads exclusive, reads shared), because
// fake-gcs-server's filesystem backend can pair an object's new bytes with its
// old length and checksum when a read races an overwrite.
type objectLocks struct {
	mu    sync.Mutex
	locks map[string]*objectLock
}

type objectLock struct {
	rw   sync.RWMutex
	refs int
}

func (l *objectLocks) get(name string) *objectLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.locks == nil {
		l.locks = map[string]*objectLock{}
	}
	ol := l.locks[name]
	if ol == nil {
		ol = &objectLock{}
		l.locks[name] = ol
	}
	ol.refs++
	return ol
}

func (l *objectLocks) put(name string, ol *objectLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ol.refs--; ol.refs == 0 {
		delete(l.locks, name)
	}
}

// wrap serialises requests per object name.
func (l *objectLocks) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, object := classify(r)
		if kind == "other" || kind == "list" {
			if k, name, ok := xmlObject(r); ok {
				kind, object = k, name
			}
		}
		if object == "" {
			next.ServeHTTP(w, r)
			return
		}
		ol := l.get(object)
		defer l.put(object, ol)
		if kind == "read" {
			ol.rw.RLock()
			defer ol.rw.RUnlock()
		} else {
			ol.rw.Lock()
			defer ol.rw.Unlock()
		}
		if kind == "delete" && !generationMatches(next, r) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusPreconditionFailed)
			_, _ = io.WriteString(w, `{"error":{"code":412,"message":"conditionNotMet"}}`)
			return
		}
		if kind == "write" && !xmlGenerationMatches(next, r) {
			writeXMLError(w, http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// generationMatches checks a delete's ifGenerationMatch, which fake-gcs-server
// ignores and Cloud Storage enforces, against the object's generation (read
// under the object's lock). A missing object passes: the delete answers 404.
func generationMatches(next http.Handler, r *http.Request) bool {
	want := r.URL.Query().Get("ifGenerationMatch")
	if want == "" {
		return true
	}
	gen, exists := generationOf(next, r, r.URL.Path)
	return !exists || gen == want
}

// xmlGenerationMatches checks the x-goog-if-generation-match header of a
// path-style PUT (a signed upload URL), which fake-gcs-server ignores: the
// object must be at that generation, or absent for 0.
func xmlGenerationMatches(next http.Handler, r *http.Request) bool {
	want := r.Header.Get("X-Goog-If-Generation-Match")
	if want == "" {
		return true
	}
	bucket, name, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	gen, exists := generationOf(next, r, "/storage/v1/b/"+bucket+"/o/"+name)
	if want == "0" {
		return !exists
	}
	return exists && gen == want
}

// generationOf reads an object's generation through the emulator's JSON API
// at path (/storage/v1/b/{bucket}/o/{object}), under the object's lock.
func generationOf(next http.Handler, r *http.Request, path string) (gen string, exists bool) {
	get := r.Clone(r.Context())
	get.Method, get.Body, get.ContentLength = http.MethodGet, http.NoBody, 0
	get.URL.Path, get.URL.RawPath, get.URL.RawQuery = path, "", ""
	get.Header = http.Header{}
	h := &held{header: http.Header{}}
	rec := &recorder{ResponseWriter: h, status: http.StatusOK}
	next.ServeHTTP(rec, get)
	if rec.status != http.StatusOK {
		return "", false
	}
	var meta struct {
		Generation string `json:"generation"`
	}
	if err := json.Unmarshal(h.body.Bytes(), &meta); err != nil {
		return "", false
	}
	return meta.Generation, true
}

// xmlObject names the object of a path-style GET or PUT (signed URLs),
// /bucket/object, and says whether it reads or writes it.
func xmlObject(r *http.Request) (kind, name string, ok bool) {
	switch r.Method {
	case http.MethodGet:
		kind = "read"
	case http.MethodPut:
		kind = "write"
	default:
		return "", "", false
	}
	if strings.HasPrefix(r.URL.Path, "/storage/") || strings.HasPrefix(r.URL.Path, "/upload/") || strings.HasPrefix(r.URL.Path, "/download/") {
		return "", "", false
	}
	_, name, ok = strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return kind, name, ok && name != ""
}
