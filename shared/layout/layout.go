// Package layout is the map of the bucket: every prefix the platform writes
// under and every object name an operator edits, defined once. The lifecycle
// rules of terraform/storage.tf follow this map (a test holds them together).
package layout

import "strconv"

// Retention says what deletes the objects under a prefix besides the code.
type Retention int

// Retentions.
const (
	// Kept objects have no lifecycle rule: operators or the code own them.
	Kept Retention = iota
	// ByAge objects are deleted a fixed number of days after they were written.
	ByAge
	// ByUse objects are deleted once nobody has used them for a number of
	// days: every reuse moves their custom time forward.
	ByUse
)

func (r Retention) String() string {
	switch r {
	case ByAge:
		return "by age"
	case ByUse:
		return "by use"
	}
	return "kept"
}

// Prefix is one top-level prefix of the bucket.
type Prefix struct {
	Name      string
	Retention Retention
	// Holds says what lives there.
	Holds string
}

// The prefixes.
const (
	// Batches holds everything of one batch under batches/{id}/: one prefix
	// lists, retains or deletes it.
	Batches = "batches/"
	// Refs holds reference images, shared across batches by content.
	Refs = "refs/"
	// Idempotency holds one record per (user, Idempotency-Key).
	Idempotency = "idempotency/"
	// Budgets holds one account per user and UTC day under budgets/{day}/,
	// and the shards of the deployment's daily cap under budgets/{day}/total/.
	Budgets = "budgets/"
	// Probes holds one object per instance that readiness overwrites.
	Probes = "probes/"
	// Config holds the operators' settings; nothing deletes them.
	Config = "config/"
	// Housekeeping holds the housekeeping job's memory between runs.
	Housekeeping = "housekeeping/"
	// Staging holds reference images while a submit streams them in, before
	// their SHA-256 is known; each is copied to refs/ and deleted.
	Staging = "staging/"
	// Queued holds one create-once marker per unfinished batch under a
	// prefix per user, whose name carries the batch's row count: one listing
	// counts a user's queued rows, and no object is rewritten per submit.
	Queued = "queued/"
	// Uploads holds the reference images users PUT through signed URLs,
	// under a prefix per user whose names sort by time: one bounded listing
	// counts a user's uploads of the last day.
	Uploads = "uploads/"
	// Users holds per-user indexes: users/{user key}/batches/ has one
	// create-once entry per batch, named to sort newest first, so one listing
	// is a page of the user's batches.
	Users = "users/"
)

// Prefixes lists every prefix with its retention.
func Prefixes() []Prefix {
	return []Prefix{
		{Batches, ByAge, "batch manifests, row state, images, completion markers"},
		{Refs, ByUse, "reference images by SHA-256"},
		{Idempotency, ByAge, "Idempotency-Key records"},
		{Budgets, ByAge, "daily budget accounts, per user and the deployment's total in shards"},
		{Probes, ByAge, "readiness probe objects"},
		{Config, Kept, "operator settings"},
		{Housekeeping, Kept, "the housekeeping job's cursor"},
		{Staging, ByAge, "reference images being fetched, before they are named by content"},
		{Queued, ByAge, "one marker per unfinished batch, per user"},
		{Uploads, ByAge, "reference images users upload through signed URLs, per user, for a day"},
		{Users, ByAge, "one index entry per batch, per user, newest first"},
	}
}

// Operator settings, each a JSON object read on a TTL.
const (
	// FlagsObject maps flag names to values that override the environment:
	// {"LIVE_RUNS": "10%"}.
	FlagsObject = Config + "flags.json"
	// APIKeysObject maps key hashes to users:
	// {"keys": {"<sha256 hex of the key>": {"user": "render-farm", "name": "CI"}}}.
	// Only hashes are stored, so the bucket never holds a usable key.
	APIKeysObject = Config + "apikeys.json"
	// BudgetsObject holds per-user daily limits in USD, keyed by user id (for
	// an ID token its issuer and subject, auth.UserID: "g.1084…" for Google,
	// "ip-<project>.<uid>" for Identity Platform; an API key's user):
	// {"users": {"g.1084…": 100}}.
	BudgetsObject = Config + "budgets.json"
	// SheetsObject lists, per user id, the spreadsheets that user's batches
	// may write to: {"users": {"<user id>": ["<spreadsheetId>", …]}}.
	SheetsObject = Config + "sheets.json"
)

// ConfigObjects lists every operator setting.
func ConfigObjects() []string {
	return []string{FlagsObject, APIKeysObject, BudgetsObject, SheetsObject}
}

// BudgetTotalShard names one shard of the deployment's daily cap on a day:
// the cap is split over several objects because each takes about one write
// per second, and every live submit writes one.
func BudgetTotalShard(day string, shard int) string {
	return Budgets + day + "/total/" + strconv.Itoa(shard) + ".json"
}

// CursorObject is where the housekeeping walk stands between runs.
const CursorObject = Housekeeping + "cursor.json"

// ProbeObject is the object an instance's readiness probe overwrites.
func ProbeObject(instance string) string { return Probes + instance + ".json" }
