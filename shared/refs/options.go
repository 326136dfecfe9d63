// Package refs fetches user-supplied reference images safely and merges them per
// row. Reference URLs are user input fetched from inside Google Cloud, so every
// fetch goes through an address policy enforced at dial time (no loopback,
// private, link-local — the metadata server — CGNAT or IPv4-embedding IPv6
// destinations, on every redirect hop), a byte cap enforced while reading, and an
// image header check with a pixel cap before anything could decode the image.
// Fetched images are streamed into the bucket while they are hashed (never held
// whole in memory) and stored once, addressed by their SHA-256, so the same
// picture used by many rows or batches costs one object. The fetches of every
// submit on an instance share two limits, on concurrent fetches and on bytes
// in flight, so no number of submits can take the instance's memory.
package refs

import (
	"net"
	"slices"
	"time"
)

// Defaults of Options.
const (
	DefaultMaxBytes     = 10 << 20
	DefaultMaxPixels    = 50_000_000
	DefaultTimeout      = 10 * time.Second
	DefaultRetries      = 2
	DefaultMaxFetches   = 8
	DefaultMaxInflight  = 128 << 20
	DefaultMaxRedirects = 3
	// DefaultResolveTimeout leaves a 60-second submit time to write the batch
	// after its references.
	DefaultResolveTimeout = 25 * time.Second
)

// stageChunk is the storage writer's buffer of a reference being staged:
// none. The content streams through in one upload request, so a fetch holds
// no writer buffer at all (the client's default is 16 MiB per writer; 1 MiB
// resumable chunks measured half the throughput against the emulator, see
// docs/PERFORMANCE.md). An upload that fails is not retried by the client
// (the bytes are not kept to resend): the submit fails with the bucket's
// error and may be retried whole.
const stageChunk = 0

// userAgent identifies the fetcher to the servers it reads from, so their owners
// can tell what is calling them.
const userAgent = "assetgen-refs/1"

// Options configure a Fetcher. The zero value of each field means its default.
type Options struct {
	// MaxBytes caps a reference's size; it is enforced while reading, so a
	// missing or lying Content-Length changes nothing. Default 10 MiB.
	MaxBytes int64
	// MaxPixels caps width×height, checked from the image header
	// (image.DecodeConfig) before anything decodes the image. Default 50,000,000.
	MaxPixels int64
	// Timeout bounds one attempt (connect, redirects, headers and body). Default 10s.
	Timeout time.Duration
	// Retries is how many more attempts follow a timeout, a 429 or a 5xx, with
	// exponential backoff. Default 2 (three attempts); negative means none.
	Retries int
	// MaxFetches (REF_MAX_FETCHES) is how many fetches run at once on the
	// instance, across every Resolve of the Fetcher. Default 8.
	MaxFetches int
	// MaxInflight (REF_MAX_INFLIGHT_MIB) bounds the bytes of the references
	// being fetched at once on the instance: each fetch reserves MaxBytes
	// before it starts and gives back what the declared length shows it will
	// not need. Default 128 MiB; never below MaxBytes.
	MaxInflight int64
	// ResolveTimeout (REF_RESOLVE_TIMEOUT) bounds one Resolve's fetching,
	// waits for the instance's limits included. Default 25s.
	ResolveTimeout time.Duration
	// MaxRedirects is how many redirects one attempt follows. Default 3;
	// negative means none.
	MaxRedirects int
	// AllowLoopback (REFS_ALLOW_LOOPBACK) lets local demos and tests fetch from
	// 127.0.0.0/8 and ::1, over plain http:// too. Never on in the cloud.
	AllowLoopback bool
	// Buckets are the buckets gs:// references may name.
	Buckets []string
	// Private are buckets whose objects a gs:// reference may name only
	// where the resolve's context grants it (WithGrant): the platform's own
	// bucket, whose uploads each belong to one user. Private wins over
	// Buckets.
	Private []string
	// Resolver resolves host names for the dialer (tests inject one); nil means
	// the default resolver. Its answers are still checked at dial time.
	Resolver *net.Resolver
}

// withDefaults fills in the defaults and copies what the caller could mutate.
func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = DefaultMaxPixels
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.MaxFetches <= 0 {
		o.MaxFetches = DefaultMaxFetches
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	o.MaxInflight = max(o.MaxInflight, o.MaxBytes)
	if o.ResolveTimeout <= 0 {
		o.ResolveTimeout = DefaultResolveTimeout
	}
	switch {
	case o.MaxRedirects == 0:
		o.MaxRedirects = DefaultMaxRedirects
	case o.MaxRedirects < 0:
		o.MaxRedirects = 0
	}
	o.Buckets = slices.Clone(o.Buckets)
	o.Private = slices.Clone(o.Private)
	return o
}
