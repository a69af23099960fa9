#!/usr/bin/env bash
# bench-ab.sh BASE [ROUNDS] — the README's benchmark table: Acquire+Release
# against puddle, for the commit BASE and for the working tree, each case in
# a process of its own (all cases in one process make the contended ones
# bimodal on a small machine), alternating between the builds ROUNDS times
# (default 20). It prints, per case and build, the median of the per-run
# ratios to puddle (from the same process), its quartiles, and the median
# ns/op.
#
# Code layout alone moves a case by a few hundredths of a ratio: the same
# code with every function at another address runs measurably faster or
# slower, puddle included. With LAYOUTS=N (default 1), each of the two
# builds is made N times, the k-th with an unused function of k*3 lines
# added to the package ahead of its other files, and the ratios are pooled
# over the N layouts; use N=3 or more for differences under 0.05. CASES
# picks the cases (a space-separated list; default all).
set -euo pipefail
base=${1:?usage: scripts/bench-ab.sh BASE [ROUNDS]}
rounds=${2:-20}
iters=${ITERS:-500000}
layouts=${LAYOUTS:-1}
cases=${CASES:-uncontended g8_pool64 g8_pool1_handoff g64_pool8 uncontended_adaptive g8_pool64_adaptive g64_pool8_adaptive}
top=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$top" worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

git -C "$top" worktree add --detach "$work/base" "$base" >/dev/null
# The working tree, copied so that the layout pads never touch it.
mkdir "$work/head"
tar -C "$top" --exclude=./.git --exclude=./.tools --exclude=node_modules -cf - . | tar -C "$work/head" -xf -

# build DIR NAME: DIR's root package as $work/NAME.0.test ... NAME.(layouts-1).test.
build() {
	local k i
	for ((k = 0; k < layouts; k++)); do
		if ((k > 0)); then
			{
				printf 'package supapool\n\nvar layoutPadSink int\n\n//go:noinline\nfunc layoutPad(x int) {\n\tfor i := 0; i < x; i++ {\n'
				for ((i = 0; i < 3 * k; i++)); do printf '\t\tlayoutPadSink ^= i << %d\n' "$i"; done
				printf '\t}\n}\n'
			} >"$1/a_layout_pad.go"
		fi
		(cd "$1" && go test -c -o "$work/$2.$k.test" .)
	done
	rm -f "$1/a_layout_pad.go"
}
build "$work/base" base
build "$work/head" head

for ((r = 1; r <= rounds; r++)); do
	for c in $cases; do
		for ((k = 0; k < layouts; k++)); do
			for b in base head; do
				"$work/$b.$k.test" -test.run '^$' -test.bench "Pool/^${c}\$" -test.benchmem \
					-test.benchtime "${iters}x" 2>/dev/null | grep '^Benchmark' | sed "s/^/$b $k /" >>"$work/runs" || true
			done
		done
	done
	printf 'round %d of %d\n' "$r" "$rounds" >&2
done

# Pair each supapool/observed line with the puddle line of the same run.
awk '
{
	build = $1; layout = $2; split($3, part, "/"); c = part[2]; impl = part[3]; sub(/-[0-9]+$/, "", impl); ns = $5
	if (impl == "puddle") {
		for (k in last) {
			split(k, kk, SUBSEP)
			if (kk[1] == build && kk[2] == layout && kk[3] == c) { print build, c, kk[4], last[k] / ns, last[k]; delete last[k] }
		}
	} else last[build, layout, c, impl] = ns
}' "$work/runs" | sort -k1,1 -k2,2 -k3,3 -k4,4n | awk -v layouts="$layouts" '
function flush() {
	if (n == 0) return
	printf "%-5s %-22s %-9s ratio median %.2f (q1 %.2f, q3 %.2f)  ns/op median %.1f  runs %d (%d layouts)\n",
		key[1], key[2], key[3], r[int((n + 1) / 2)], r[int((n + 3) / 4)], r[int((3 * n + 3) / 4)], median(nsv, n), n, layouts
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
