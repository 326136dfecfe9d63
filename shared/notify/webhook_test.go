package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/googleapis/gax-go/v2"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/refs"
)

var (
	keys = mustKeys("k1:" + seedOf(1))
	body = []byte(`{"type":"batch.finished","batchId":"b1"}`)
)

// verifyAt checks a received signature the way a receiver would, with the
// published keys and the receiver's clock at the signing clock's epoch.
func verifyAt(r received) error {
	return Verify(keys.Public(), r.header.Get(HeaderSignature), r.body, epoch, time.Minute)
}

func TestDeliverFirstTry(t *testing.T) {
	is := is.New(t)
	rec := newRecorder(t, false, statuses(http.StatusNoContent))
	w := testWebhooks(keys, refs.SafeClient(true, 5*time.Second, 0), 10*time.Second)

	out := w.Deliver(context.Background(), rec.srv.URL+"/hook", "b1:webhook", body)
	is.Equal(out.Status, StatusDelivered)     // delivered
	is.True(out.Delivered())                  // delivered
	is.Equal(out.Kind, KindWebhook)           // kind
	is.Equal(out.Target, rec.srv.URL+"/hook") // the URL
	is.Equal(out.Attempts, 1)                 // first try
	is.Equal(out.Code, http.StatusNoContent)  // last status
	is.Equal(out.Error, "")                   // no error
	is.Equal(out.Retryable, false)            // nothing to retry
	is.True(!out.At.IsZero())                 // when

	reqs := rec.requests()
	is.Equal(len(reqs), 1) // one request
	r := reqs[0]
	is.Equal(r.method, http.MethodPost)                                                       // POST
	is.Equal(r.path, "/hook")                                                                 // to the URL
	is.Equal(string(r.body), string(body))                                                    // body intact
	is.Equal(r.header.Get("Content-Type"), "application/json")                                // JSON
	is.Equal(r.header.Get("User-Agent"), "assetgen-webhooks/1")                               // who calls
	is.Equal(r.header.Get(HeaderDelivery), "b1:webhook")                                      // delivery id
	is.True(strings.HasPrefix(r.header.Get(HeaderSignature), "t=1700000000,kid=k1,ed25519=")) // signed now, by k1
	is.NoErr(verifyAt(r))                                                                     // the receiver's recipe accepts it
	is.Equal(r.header.Get(HeaderSignature), keys.Sign(epoch, body))                           // and it is Sign's
}

func TestDeliverRetriesThenDelivers(t *testing.T) {
	is := is.New(t)
	rec := newRecorder(t, false, statuses(503, 503, 200))
	w := testWebhooks(keys, refs.SafeClient(true, 5*time.Second, 0), 10*time.Second)

	out := w.Deliver(context.Background(), rec.srv.URL, "d-1", body)
	is.Equal(out.Status, StatusDelivered) // delivered in the end
	is.Equal(out.Attempts, 3)             // after two 503s
	is.Equal(out.Code, 200)               // last status
	is.Equal(out.Error, "")               // no error left

	reqs := rec.requests()
	is.Equal(len(reqs), 3) // the server saw each attempt
	seen := map[string]bool{}
	for _, r := range reqs {
		is.Equal(r.header.Get(HeaderDelivery), "d-1")                                                 // the same delivery id every time
		is.Equal(string(r.body), string(body))                                                        // the same body
		is.NoErr(Verify(keys.Public(), r.header.Get(HeaderSignature), r.body, epoch, 10*time.Second)) // each verifies
		seen[r.header.Get(HeaderSignature)] = true
	}
	is.Equal(len(seen), 3) // a fresh signature (timestamp) per attempt
}

func TestDeliverRetryAfter(t *testing.T) {
	t.Run("zero is honoured", func(t *testing.T) {
		is := is.New(t)
		rec := newRecorder(t, false, func(n int, w http.ResponseWriter) {
			if n == 0 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		w := testWebhooks(keys, refs.SafeClient(true, 5*time.Second, 0), 10*time.Second)
		// A backoff far past the bound: only Retry-After: 0 lets the retry happen.
		w.backoff = gax.Backoff{Initial: 1000 * time.Hour, Max: 1000 * time.Hour, Multiplier: 2}
		out := w.Deliver(context.Background(), rec.srv.URL, "d-2", body)
		is.Equal(out.Status, StatusDelivered) // retried after the 429
		is.Equal(out.Attempts, 2)             // once more
		is.Equal(len(rec.requests()), 2)      // both reached the server
	})
	t.Run("beyond the bound gives up at once", func(t *testing.T) {
		is := is.New(t)
		rec := newRecorder(t, false, func(_ int, w http.ResponseWriter) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		w := testWebhooks(keys, refs.SafeClient(true, 5*time.Second, 0), time.Second)
		out := w.Deliver(context.Background(), rec.srv.URL, "d-3", body)
		is.Equal(out.Status, StatusFailed) // no waiting past the bound
		is.Equal(out.Attempts, 1)          // one attempt
		is.Equal(out.Code, 503)            // last status
		is.True(out.Retryable)             // a later retry may work
	})
}

func TestDeliverPermanentFailure(t *testing.T) {
	tests := []struct {
		name string
		code int
	}{
		{"bad request", http.StatusBadRequest},
		{"unauthorized", http.StatusUnauthorized},
		{"not found", http.StatusNotFound},
		{"gone", http.StatusGone},
		{"redirect", http.StatusFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			rec := newRecorder(t, false, func(_ int, w http.ResponseWriter) {
				if tt.code == http.StatusFound {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.code)
			})
			// The client would follow redirects: Deliver must not.
			w := testWebhooks(keys, refs.SafeClient(true, 5*time.Second, 3), 10*time.Second)
			out := w.Deliver(context.Background(), rec.srv.URL+"/hook", "d-4", body)
			is.Equal(out.Status, StatusFailed)                             // failed
			is.Equal(out.Attempts, 1)                                      // at once
			is.Equal(out.Code, tt.code)                                    // with the answer's status
			is.Equal(out.Retryable, false)                                 // for good
			is.True(strings.Contains(out.Error, http.StatusText(tt.code))) // and says why
			is.Equal(len(rec.requests()), 1)                               // no redirect followed
		})
	}
}

func TestDeliverPersistent500(t *testing.T) {
	is := is.New(t)
	rec := newRecorder(t, false, statuses(http.StatusInternalServerError))
	w := testWebhooks(keys, refs.SafeClient(true, 5*time.Second, 0), 100*time.Millisecond)
	start := time.Now()
	out := w.Deliver(context.Background(), rec.srv.URL, "d-5", body)
	is.Equal(out.Status, StatusFailed) // failed
	is.True(out.Retryable)             // a later retry may work
	is.True(out.Attempts > 1)          // after retrying
	n := len(rec.requests())
	is.True(n == out.Attempts || n == out.Attempts-1)    // every attempt counted (the bound may cut the last one short)
	is.Equal(out.Code, 500)                              // last status
	is.True(strings.Contains(out.Error, "gave up"))      // says it ran out of time
	is.True(strings.Contains(out.Error, "answered 500")) // and why
	is.True(time.Since(start) < 5*time.Second)           // bounded
	is.True(!strings.Contains(out.Error, seedOf(1)))     // no key
}

func TestDeliverNetworkFailure(t *testing.T) {
	is := is.New(t)
	rec := newRecorder(t, false, statuses(200))
	url := rec.srv.URL + "/hooks/T0123/tok_SECRET_IN_PATH"
	rec.srv.Close() // nothing listens there now
	w := testWebhooks(keys, refs.SafeClient(true, time.Second, 0), 50*time.Millisecond)
	out := w.Deliver(context.Background(), url, "d-6", body)
	is.Equal(out.Status, StatusFailed)                      // failed
	is.True(out.Retryable)                                  // network: retry later
	is.True(out.Attempts >= 1)                              // tried
	is.Equal(out.Code, 0)                                   // no answer
	is.True(!strings.Contains(out.Error, "SECRET_IN_PATH")) // the URL is not repeated
	is.True(!strings.Contains(out.Error, "127.0.0.1"))      // nor the address
}

func TestDeliverCancelled(t *testing.T) {
	is := is.New(t)
	rec := newRecorder(t, false, statuses(200))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := testWebhooks(keys, refs.SafeClient(true, time.Second, 0), 10*time.Second)
	out := w.Deliver(ctx, rec.srv.URL, "d-7", body)
	is.Equal(out.Status, StatusFailed) // not delivered
	is.True(out.Retryable)             // the next caller may deliver it
	is.Equal(out.Attempts, 1)          // no retry on a done context
	is.Equal(len(rec.requests()), 0)   // nothing sent
}

func TestDeliverRefusesBadInput(t *testing.T) {
	rec := newRecorder(t, false, statuses(200))
	tests := []struct {
		name string
		keys *SigningKeys
		url  string
		id   string
	}{
		{"no key", nil, rec.srv.URL, "d"},
		{"no delivery id", keys, rec.srv.URL, ""},
		{"delivery id with a newline", keys, rec.srv.URL, "d\r\nX-Evil: 1"},
		{"delivery id too long", keys, rec.srv.URL, strings.Repeat("d", 201)},
		{"relative URL", keys, "/hook", "d"},
		{"other scheme", keys, "ftp://example.com/x", "d"},
		{"credentials", keys, "http://user:pw@" + rec.srv.Listener.Addr().String(), "d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			w := testWebhooks(tt.keys, refs.SafeClient(true, time.Second, 0), time.Second)
			out := w.Deliver(context.Background(), tt.url, tt.id, body)
			is.Equal(out.Status, StatusFailed) // refused
			is.Equal(out.Retryable, false)     // for good
			is.Equal(out.Attempts, 0)          // without sending
			is.True(out.Error != "")           // says why
		})
	}
	is := is.New(t)
	is.Equal(len(rec.requests()), 0) // nothing sent
}

// TestDeliverSSRF: with the cloud policy a loopback receiver is refused at dial
// time (or, over plain http, before dialling): the server sees nothing.
func TestDeliverSSRF(t *testing.T) {
	plain := newRecorder(t, false, statuses(200))
	secure := newRecorder(t, true, statuses(200))
	for name, rec := range map[string]*recorder{"http": plain, "https": secure} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			w := testWebhooks(keys, refs.SafeClient(false, 2*time.Second, 0), 10*time.Second)
			out := w.Deliver(context.Background(), rec.srv.URL+"/hook", "d-8", body)
			is.Equal(out.Status, StatusFailed)                             // refused
			is.Equal(out.Retryable, false)                                 // for good
			is.Equal(out.Attempts, 1)                                      // no retry
			is.True(strings.Contains(out.Error, "not publicly reachable")) // says why
			is.Equal(len(rec.requests()), 0)                               // no request reached the server
			is.Equal(rec.conns.Load(), int32(0))                           // nor a connection
		})
	}
	is := is.New(t)
	// The same receiver with loopback allowed is reached: it was the policy.
	w := testWebhooks(keys, refs.SafeClient(true, 2*time.Second, 0), 10*time.Second)
	is.True(w.Deliver(context.Background(), plain.srv.URL, "d-9", body).Delivered()) // delivered
}

func TestOutcomeJSON(t *testing.T) {
	is := is.New(t)
	out := Outcome{Kind: KindWebhook, Target: "https://h.example/x", Status: StatusFailed, Attempts: 2, Code: 503,
		Error: "e", At: epoch.UTC(), Retryable: true}
	b, err := json.Marshal(out)
	is.NoErr(err) // marshals
	is.Equal(string(b), `{"kind":"webhook","target":"https://h.example/x","status":"failed","attempts":2,"code":503,"error":"e","at":"2023-11-14T22:13:20Z","retryable":true}`)
	b, err = json.Marshal(Outcome{Kind: KindSheet, Target: "t", Status: StatusDelivered, Attempts: 1, At: epoch.UTC()})
	is.NoErr(err)                                                                                                      // marshals
	is.Equal(string(b), `{"kind":"sheet","target":"t","status":"delivered","attempts":1,"at":"2023-11-14T22:13:20Z"}`) // empties omitted
}
