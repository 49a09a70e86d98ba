#!/usr/bin/env bash
# Logit parity of memfit and llama.cpp on the same GGUF files (issue 18): a
# random-weight Qwen2 model (bench/make_llm_model.py; the Qwen1.5-1.8B widths,
# fewer layers and a smaller vocabulary by default for speed) in F16,
# quantized by memfit to Q8_0 and Q4_0; the same tokens through both engines.
#
# Per type it prints, against each engine's own F16 logits and against
# memfit's F16 ones: the largest |log-probability difference| over every
# position and token, its mean per position, top-1 and top-5 agreement
# (bench/llm_parity.py). memfit runs the tokens as one prompt (matrix-matrix)
# and one at a time (generation's matrix-vector path); llama.cpp's
# log-probabilities come from llama-perplexity --kl-divergence-base (positions
# ctx/2 .. ctx-2 of one chunk). Then the greedy continuations (memfit
# generate --temp 0, llama-simple) of a few prompts: how many characters each
# type's text shares with memfit's F16 text, and llama.cpp's with its F16.
#
# Usage: bench/llm_parity.sh LLAMA_CPP_BUILD [--layers N] [--vocab N] [--full]
#                            [--threads N] [--ctx N] [--gen N]
#   LLAMA_CPP_BUILD  an existing llama.cpp build (its bin/llama-perplexity and
#                    bin/llama-simple); nothing is built here
#   --layers N / --vocab N   the model's (default 4 and 32000); --full: the
#                    whole Qwen1.5-1.8B shape (24 layers, 151936 tokens, 3.7 GB)
#   --threads N (2), --ctx N (128: tokens of the logit run), --gen N (32)
# Files are cached in $MEMFIT_LLM_DIR (default /tmp/memfit_llm_parity).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage() {
    sed -n '/^# Usage/,/^# Files/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
(($#)) || usage
llama=$1
shift
layers=4 vocab=32000 threads=2 ctx=128 gen=32 full=0
while (($#)); do
    case $1 in
    --layers) layers=${2:?} && shift ;;
    --vocab) vocab=${2:?} && shift ;;
    --threads) threads=${2:?} && shift ;;
    --ctx) ctx=${2:?} && shift ;;
    --gen) gen=${2:?} && shift ;;
    --full) full=1 ;;
    *) usage ;;
    esac
    shift
done
for t in llama-perplexity llama-simple; do
    [[ -x $llama/bin/$t ]] || { echo "llm_parity: $llama/bin/$t missing" >&2; exit 1; }
done
bin=$root/build/release/memfit
logits=$root/build/release/bench/llm_logits
for b in "$bin" "$logits"; do
    [[ -x $b ]] || { echo "llm_parity: $b missing: build the release preset first" >&2; exit 1; }
done
py=/usr/bin/python3
parity=$root/bench/llm_parity.py
dir=${MEMFIT_LLM_DIR:-/tmp/memfit_llm_parity}
mkdir -p "$dir"
if ((full)); then
    name=qwen1.8b gen_opts=()
else
    name=qwen1.8b-l$layers-v$vocab gen_opts=(--layers "$layers" --vocab "$vocab")
fi
base=$dir/$name
[[ -f $base-f16.gguf ]] || $py "$root/bench/make_llm_model.py" "${gen_opts[@]}" "$base-f16.gguf"
for t in q8_0 q4_0; do
    [[ -f $base-$t.gguf ]] || "$bin" quantize "$base-f16.gguf" "$base-$t.gguf" --type $t \
        --threads "$threads" >/dev/null
done

# A text of lowercase words (the tokenizer's merges cover them), long enough
# for one chunk of ctx tokens.
text=$dir/words.txt
$py -c 'import random, sys
r = random.Random(3)
print(" ".join("".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 7)))
               for _ in range(int(sys.argv[1]))))' $((ctx * 2)) >"$text"

types=(f16 q8_0 q4_0)
for t in "${types[@]}"; do
    "$llama/bin/llama-perplexity" -m "$base-$t.gguf" -f "$text" -c "$ctx" --chunks 1 -b "$ctx" \
        -t "$threads" --kl-divergence-base "$dir/llama-$t.kld" >"$dir/llama-$t.log" 2>&1 ||
        { tail -n 5 "$dir/llama-$t.log" >&2; exit 1; }
done
$py "$parity" tokens "$dir/llama-f16.kld" "$dir/tokens.bin"
for t in "${types[@]}"; do
    "$logits" "$base-$t.gguf" "$dir/tokens.bin" "$dir/memfit-$t.bin" --threads "$threads"
    "$logits" "$base-$t.gguf" "$dir/tokens.bin" "$dir/memfit-$t-gen.bin" --threads "$threads" \
        --prompt 0
done

echo "== $name, $ctx tokens, $threads threads; log-probabilities (llama.cpp: positions $((ctx / 2))-$((ctx - 2)))"
cd "$dir"
echo "-- each engine against its own F16"
$py "$parity" compare llama-f16.kld llama-q8_0.kld llama-q4_0.kld
$py "$parity" compare memfit-f16.bin memfit-q8_0.bin memfit-q8_0-gen.bin memfit-q4_0.bin \
    memfit-q4_0-gen.bin
echo "-- against memfit's F16"
$py "$parity" compare memfit-f16.bin llama-f16.kld llama-q8_0.kld llama-q4_0.kld

echo "-- greedy text ($gen tokens): characters shared with memfit's F16 text (llama.cpp: with its own F16 text too)"
prompts=("The quick brown fox" "once upon a time" "hello world" "in the beginning"
    "she sells sea shells" "numbers are fun" "the cat sat on the mat" "what is the answer")
shared() { $py -c 'import os, sys; print(len(os.path.commonprefix(sys.argv[1:])))' "$1" "$2"; }
memfit_text() { "$bin" generate "$1" -p "$2" -n "$gen" --temp 0 --threads "$threads" 2>/dev/null; }
llama_text() {
    local s
    s=$("$llama/bin/llama-simple" -m "$1" -n "$gen" "$2" 2>/dev/null)
    printf '%s' "${s#"$2"}"
}
declare -A ref lref
for p in "${prompts[@]}"; do
    ref[$p]=$(memfit_text "$base-f16.gguf" "$p")
    lref[$p]=$(llama_text "$base-f16.gguf" "$p")
done
for t in "${types[@]}"; do
    m_sum=0 l_sum=0 ll_sum=0 list=
    for p in "${prompts[@]}"; do
        mine=$(memfit_text "$base-$t.gguf" "$p")
        theirs=$(llama_text "$base-$t.gguf" "$p")
        a=$(shared "${ref[$p]}" "$mine") b=$(shared "${ref[$p]}" "$theirs")
        c=$(shared "${lref[$p]}" "$theirs")
        m_sum=$((m_sum + a)) l_sum=$((l_sum + b)) ll_sum=$((ll_sum + c))
        list+=" $a/$b"
    done
    n=${#prompts[@]}
    printf '%-5s memfit %5.1f  llama.cpp %5.1f (with its F16: %5.1f) mean chars; per prompt memfit/llama:%s\n' \
        "$t" "$(awk -v s=$m_sum -v n=$n 'BEGIN {print s / n}')" \
        "$(awk -v s=$l_sum -v n=$n 'BEGIN {print s / n}')" \
        "$(awk -v s=$ll_sum -v n=$n 'BEGIN {print s / n}')" "$list"
done
