#!/usr/bin/env bash
# The issue-8 LLM benchmark: a Qwen1.5-1.8B-shaped model with random weights
# (bench/make_llm_model.py) in F16, Q8_0, Q4_0 and Q4_K_M (memfit quantize),
# then for each file prompt tokens/s (128-token prompt), generation tokens/s
# (32 tokens from an empty context, as llama-bench's tg32) and peak RSS on 2 threads with build/release/bench/bench_llm;
# until that program exists, bench_matvec's matrix-vector figures (the
# bandwidth-bound part of generation) stand in. With LLAMA_CPP_DIR set to a
# llama.cpp build (its bin/llama-bench), llama-bench -p 128 -n 32 -t 2 runs
# on the same files and the ratios memfit / llama.cpp are printed, and, when
# the build has bin/llama-simple (greedy), the greedy continuation of the
# same prompt by both is compared. The machine's read bandwidth on 2 threads
# (bench_matvec --bandwidth) is measured just before and just after each
# generation run ("bw GB/s", their mean: on a shared VM it swings by 1.5x
# within minutes), and "bw %" says what share of it generation uses (weight
# bytes read per token x tokens/s / bandwidth; for llama.cpp the same bytes
# per token at its rate, against the same mean).
#
# The files are cached in $MEMFIT_LLM_DIR (default /tmp/memfit_llm_bench):
# the F16 file is ~3.7 GB and the quantized ones 1-2 GB each; free space is
# checked first. Delete the directory when done.
# Usage: bench/llm_bench.sh [--small] [TYPES...]   (default: f16 q8_0 q4_0 q4_k_m)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/release/memfit
bench_llm=$root/build/release/bench/bench_llm
matvec=$root/build/release/bench/bench_matvec
dir=${MEMFIT_LLM_DIR:-/tmp/memfit_llm_bench}
small=
if [[ ${1:-} == --small ]]; then
    small=--small
    shift
fi
types=("$@")
((${#types[@]})) || types=(f16 q8_0 q4_0 q4_k_m)
[[ -x $bin ]] || { echo "$bin missing: build the release preset first" >&2; exit 1; }
mkdir -p "$dir"
base=$dir/$([[ -n $small ]] && echo qwen-small || echo qwen1.8b)

need_mb=$([[ -n $small ]] && echo 600 || echo 9000)
free_mb=$(df -Pm "$dir" | awk 'NR == 2 {print $4}')
if ((free_mb < need_mb)) && [[ ! -f $base-f16.gguf ]]; then
    echo "llm_bench: $free_mb MB free in $dir, about $need_mb MB needed" >&2
    exit 1
fi
[[ -f $base-f16.gguf ]] || /usr/bin/python3 "$root/bench/make_llm_model.py" $small "$base-f16.gguf"
for t in "${types[@]}"; do
    f=$base-$t.gguf
    [[ $t == f16 || -f $f ]] || "$bin" quantize "$base-f16.gguf" "$f" --type "$t" --threads 2 |
        tail -n 3
done

# "prompt gen" tokens/s from llama-bench's markdown table (pp128 and tg32 rows).
llama_rates() {
    "$LLAMA_CPP_DIR/bin/llama-bench" -m "$1" -p 128 -n 32 -t 2 -o csv 2>/dev/null |
        awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) {gsub(/"/, "", $i); col[$i] = i}; next}
                 {gsub(/"/, ""); if ($col["n_prompt"] > 0) pp = $col["avg_ts"]; else tg = $col["avg_ts"]}
                 END {printf "%s %s\n", pp, tg}'
}

# The machine's read bandwidth on 2 threads now, GB/s.
read_bw() {
    "$matvec" --bandwidth --threads 2 --types q4_0 --layers 1 |
        awk '/^read bandwidth: 2 threads/ {print $5}'
}

bw=
printf '%-8s %9s %10s %10s %11s %7s %6s' type "file MB" "prompt t/s" "gen t/s" "peak RSS MB" "bw GB/s" "bw %"
[[ -n ${LLAMA_CPP_DIR:-} ]] && printf ' %12s %12s %8s %8s %8s' "llama pp t/s" "llama tg t/s" "pp x" "tg x" "llama bw %"
echo
# Share of the bandwidth that generating at $2 tokens/s with $1 MB read per token uses.
bw_pct() { awk -v mb="$1" -v t="$2" -v bw="$bw" 'BEGIN {if (mb + 0 > 0 && t + 0 > 0 && bw + 0 > 0) printf "%.0f", 100 * mb * t / 1000 / bw; else print "-"}'; }
for t in "${types[@]}"; do
    f=$base-$t.gguf
    mb=$(($(stat -c %s "$f") / 1000000))
    if [[ -x $bench_llm ]]; then
        # bench_llm prints "prompt_tps=X gen_tps=Y peak_rss_mb=Z" on its last line.
        # --batch 128: the whole prompt in one batch, as llama-bench takes it.
        out=$("$bench_llm" "$f" --threads 2 --prompt 128 --gen 32 --batch 128)
        read -r pp rss < <(tail -n 1 <<<"$out" |
            sed -E 's/.*prompt_tps=([0-9.]+).*peak_rss_mb=([0-9.]+).*/\1 \2/')
        # Generation as llama-bench's tg32 runs it: 32 tokens from an empty context (after a
        # 128-token prompt each token also reads ~130 positions of KV cache: ~8 % slower here).
        bw0=$(read_bw)
        out=$("$bench_llm" "$f" --threads 2 --prompt 1 --gen 32 --batch 1)
        bw=$(awk -v a="$bw0" -v b="$(read_bw)" 'BEGIN {printf "%.1f", (a + b) / 2}')
        tg=$(tail -n 1 <<<"$out" | sed -E 's/.*gen_tps=([0-9.]+).*/\1/')
        read_mb=$(sed -nE 's/^decode reads ([0-9.]+) MB.*/\1/p' <<<"$out")
    else
        pp=- rss=- read_mb= bw=
        # Stand-in: the t/s that bench_matvec's 2-thread bandwidth gives this file's weights.
        mt=$t
        [[ $t == q4_k_m ]] && mt=q4_k
        tg=$("$matvec" --threads 2 --types "$mt" | awk -v mb="$mb" '$2 == "2" {printf "%.1f*", $5 * 1000 / mb}')
    fi
    printf '%-8s %9s %10s %10s %11s %7s %6s' "$t" "$mb" "$pp" "$tg" "$rss" "${bw:--}" \
        "$(bw_pct "$read_mb" "$tg")"
    if [[ -n ${LLAMA_CPP_DIR:-} ]]; then
        read -r lpp ltg < <(llama_rates "$f")
        ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-"}'; }
        printf ' %12s %12s %8s %8s %8s' "$lpp" "$ltg" "$(ratio "$pp" "$lpp")" "$(ratio "${tg%\*}" "$ltg")" \
            "$(bw_pct "$read_mb" "$ltg")"
    fi
    echo
done
[[ -x $bench_llm ]] || echo "(* no bench_llm yet: weight bandwidth of bench_matvec on 2 threads / file size, an upper bound for generation)"

# Greedy tokens: llama-simple (greedy sampling) against memfit generate --temp 0.
if [[ -n ${LLAMA_CPP_DIR:-} && -x $LLAMA_CPP_DIR/bin/llama-simple ]]; then
    prompt="The quick brown fox"
    for t in "${types[@]}"; do
        f=$base-$t.gguf
        mine=$("$bin" generate "$f" -p "$prompt" -n 16 --temp 0 --threads 2 2>/dev/null)
        theirs=$("$LLAMA_CPP_DIR/bin/llama-simple" -m "$f" -n 16 "$prompt" 2>/dev/null)
        if [[ $theirs == *"$prompt$mine"* ]]; then
            echo "greedy $t: the same 16-token continuation as llama.cpp"
        else
            printf 'greedy %s: DIFFERENT\n  memfit:    %q\n  llama.cpp: %q\n' "$t" "$mine" "$theirs"
        fi
    done
fi

# Peak RSS of generating 32 tokens with a 512-token context, against the
# issue's bound (file + KV cache + 64 MB) and llama.cpp's (llama-simple, mmap).
if [[ -x /usr/bin/time ]]; then
    prompt="The quick brown fox"
    for t in "${types[@]}"; do
        f=$base-$t.gguf
        kv_mib=$("$bin" generate "$f" -p "$prompt" -n 1 --ctx 512 --stats --threads 2 2>&1 |
            sed -nE 's/.*KV cache ([0-9.]+) MiB.*/\1/p' | head -n 1)
        /usr/bin/time -f '%M' -o "$dir/rss.txt" "$bin" generate "$f" -p "$prompt" -n 32 --ctx 512 \
            --temp 0 --threads 2 >/dev/null 2>&1
        mine=$(tail -n 1 "$dir/rss.txt")
        line="rss $t: memfit generate -n 32 --ctx 512: $((mine / 1024)) MiB"
        if [[ -n $kv_mib ]]; then
            bound=$(awk -v f="$(stat -c %s "$f")" -v kv="$kv_mib" 'BEGIN {printf "%.0f", f / 1048576 + kv + 64}')
            line+=" (file + KV + 64 MB = $bound MiB)"
        fi
        if [[ -n ${LLAMA_CPP_DIR:-} && -x $LLAMA_CPP_DIR/bin/llama-simple ]]; then
            /usr/bin/time -f '%M' -o "$dir/rss.txt" "$LLAMA_CPP_DIR/bin/llama-simple" -m "$f" \
                -n 32 "$prompt" >/dev/null 2>&1
            theirs=$(tail -n 1 "$dir/rss.txt")
            line+="; llama-simple: $((theirs / 1024)) MiB"
        fi
        echo "$line"
    done
    rm -f "$dir/rss.txt"
fi
