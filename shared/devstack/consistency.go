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
			if name, ok := xmlObject(r); ok {
				kind, object = "read", name
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
	get := r.Clone(r.Context())
	get.Method, get.Body, get.ContentLength = http.MethodGet, http.NoBody, 0
	get.URL.RawQuery = ""
	h := &held{header: http.Header{}}
	rec := &recorder{ResponseWriter: h, status: http.StatusOK}
	next.ServeHTTP(rec, get)
	if rec.status != http.StatusOK {
		return true
	}
	var meta struct {
		Generation string `json:"generation"`
	}
	if err := json.Unmarshal(h.body.Bytes(), &meta); err != nil {
		return true
	}
	return meta.Generation == want
}

// xmlObject names the object of a path-style GET (signed URLs): /bucket/object.
func xmlObject(r *http.Request) (string, bool) {
	if r.Method != http.MethodGet || strings.HasPrefix(r.URL.Path, "/storage/") || strings.HasPrefix(r.URL.Path, "/upload/") || strings.HasPrefix(r.URL.Path, "/download/") {
		return "", false
	}
	_, name, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return name, ok && name != ""
}
