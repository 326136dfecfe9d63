// Package scripttest runs the operator scripts (scripts/deploy.sh,
// scripts/smoke.sh) the way an operator does, with recording stand-ins of
// gcloud, terraform, curl, go and sleep first on PATH, and checks what they
// ask of Google Cloud: the order of the steps, that secret values never reach
// a command line or the output, saved plans, retries of transient errors, the
// rollback, and that their --help texts are the ones docs/deploy.md shows.
// The scripts must also run on macOS's bash 3.2 under set -u, which a static
// check guards.
package scripttest
