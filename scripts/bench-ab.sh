#!/usr/bin/env bash
# bench-ab.sh BASE [ROUNDS] — the README's benchmark table: Acquire+Release
# against puddle, for the commit BASE and for the working tree, each case in
# a process of its own (all cases in one process make the contended ones
# bimodal on a small machine), alternating between the two builds ROUNDS
# times (default 20). It prints, per case and build, the median of the
# per-run ratios to puddle (from the same process), its quartiles, and the
# median ns/op.
set -euo pipefail
base=${1:?usage: scripts/bench-ab.sh BASE [ROUNDS]}
rounds=${2:-20}
iters=${ITERS:-500000}
top=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$top" worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

git -C "$top" worktree add --detach "$work/base" "$base" >/dev/null
(cd "$work/base" && go test -c -o "$work/base.test" .)
(cd "$top" && go test -c -o "$work/head.test" .)

cases="uncontended g8_pool64 g8_pool1_handoff g64_pool8 uncontended_adaptive g8_pool64_adaptive g64_pool8_adaptive"
for ((i = 1; i <= rounds; i++)); do
	for c in $cases; do
		for b in base head; do
			"$work/$b.test" -test.run '^$' -test.bench "Pool/^${c}\$" -test.benchmem \
				-test.benchtime "${iters}x" 2>/dev/null | grep '^Benchmark' | sed "s/^/$b /" >>"$work/runs" || true
		done
	done
	printf 'round %d of %d\n' "$i" "$rounds" >&2
done

# Pair each supapool/observed line with the puddle line of the same run.
awk '
{
	build = $1; split($2, part, "/"); c = part[2]; impl = part[3]; sub(/-[0-9]+$/, "", impl); ns = $4
	if (impl == "puddle") {
		for (k in last) { split(k, kk, SUBSEP); if (kk[1] == build && kk[2] == c) { print build, c, kk[3], last[k] / ns, last[k]; delete last[k] } }
	} else last[build, c, impl] = ns
}' "$work/runs" | sort -k1,1 -k2,2 -k3,3 -k4,4n | awk '
function flush() {
	if (n == 0) return
	printf "%-5s %-22s %-9s ratio median %.2f (q1 %.2f, q3 %.2f)  ns/op median %.1f  runs %d\n",
		key[1], key[2], key[3], r[int((n + 1) / 2)], r[int((n + 3) / 4)], r[int((3 * n + 3) / 4)], median(nsv, n), n
}
function median(a, m,    i, j, t) {
	for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return a[int((m + 1) / 2)]
}
{
	k = $1 " " $2 " " $3
	if (k != prev) { flush(); n = 0; prev = k; split(k, key, " ") }
	n++; r[n] = $4; nsv[n] = $5
}
END { flush() }'
