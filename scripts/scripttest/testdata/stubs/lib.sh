# Shared by the stand-ins: record one call per line (arguments separated by
# the unit separator), and fail on purpose when testdata/fail says so.
record() {
  local IFS=$'\x1f'
  printf '%s\n' "$*" >>"$STUB_LOG"
}

# maybe_fail CMD ARGS...: the lines of $STUB_DIR/fail are
# CMD<TAB>GLOB<TAB>TIMES<TAB>MESSAGE; the first TIMES calls of CMD whose
# arguments match GLOB print MESSAGE and fail (TIMES "always": every call).
maybe_fail() {
  local cmd=$1 n=0 c g times msg count
  shift
  [ -f "$STUB_DIR/fail" ] || return 0
  while IFS=$'\t' read -r c g times msg; do
    n=$((n + 1))
    [ "$c" = "$cmd" ] || continue
    case "$*" in $g) ;; *) continue ;; esac
    count=$(cat "$STUB_STATE/fail-$n" 2>/dev/null || echo 0)
    if [ "$times" = always ] || [ "$count" -lt "$times" ]; then
      echo $((count + 1)) >"$STUB_STATE/fail-$n"
      echo "$msg" >&2
      exit 1
    fi
  done <"$STUB_DIR/fail"
}
