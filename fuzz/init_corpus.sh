#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the bundled policies, the committed seeds (fuzz/seeds/), the seed
# documents' example headers (../shared/seeds when present) and strings the tests use.
# Corpora are not committed; run this before the first `cargo fuzz run` (.ci/fuzz.sh does).
set -euo pipefail
cd "$(dirname "$0")"
root=..
corpus=corpus
mkdir -p "$corpus"/{policy_parse,policy_roundtrip,credentials,decision_diff,key_token,record_decode}

# Policies: the bundled ones and the committed extra seeds.
for f in "$root"/policies/*.policy seeds/policy/*.policy; do
    [ -f "$f" ] || continue
    for t in policy_parse policy_roundtrip; do
        cp "$f" "$corpus/$t/$(basename "$f")"
    done
    # Arbitrary bytes for the structure-aware target: only a starting point for its mutations.
    cp "$f" "$corpus/decision_diff/$(basename "$f")"
done
# Policy snippets the tests parse: every string literal that starts a definition.
n=0
grep -ho '"\(scope\|action\|role\|deny\|self\|credentials\|keys\) [^"]*"' "$root"/tests/*.rs "$root"/src/policy/*.rs 2>/dev/null |
    sort -u | while IFS= read -r lit; do
        n=$((n + 1))
        printf '%b' "${lit:1:${#lit}-2}" > "$corpus/policy_parse/test_snippet_$n" || true
    done

# Credentials: first byte = style bits (all on), then `name: value` lines.
cp seeds/credentials/* "$corpus/credentials/"
# Example headers from the seed documents and the tests.
for src in "$root"/../shared/seeds/*.txt "$root"/tests/*.rs; do
    [ -f "$src" ] || continue
    grep -ho '\(Basic\|Bearer\|apiToken\|APIKEY:ORGANIZATION\) [A-Za-z0-9+/=_.-]\{4,\}' "$src" || true
done | sort -u | while IFS= read -r value; do
    sum=$(printf '%s' "$value" | cksum | cut -d' ' -f1)
    printf '\377authorization: %s\n' "$value" > "$corpus/credentials/hdr_$sum"
done

# Key tokens and records.
cp seeds/key_token/* "$corpus/key_token/"
cp seeds/record_decode/* "$corpus/record_decode/"

for t in "$corpus"/*; do
    echo "$(basename "$t"): $(find "$t" -type f | wc -l) files"
done
