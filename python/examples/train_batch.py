"""A training loop that halves its batch when memfit says memory runs short.

    memfit monitor -i 100ms -- python3 train_batch.py

Each step "trains" on a batch by allocating batch x 1 MiB of activations
(touched, so they are resident), holding them for the step and freeing them:
the sawtooth a real training step draws. The batch grows by one each step
until the monitor's batch_factor says shrink; without memfit the loop just
grows (and in a small container gets OOM-killed).
"""

import sys
import time

import memfit

MIB = 1 << 20


def train_step(batch):
    activations = bytearray(batch * MIB)
    for i in range(0, len(activations), 4096):  # touch every page
        activations[i] = 1
    time.sleep(0.02)
    return len(activations)


def main(steps=200, start=4):
    batches = memfit.BatchController(
        start,
        minimum=1,
        on_change=lambda old, new, p: print(
            "step %d: batch %d -> %d (%s, %.0f%% of the limit)" % (step, old, new, p.level, p.percent),
            flush=True,
        ),
    )
    memfit.answer_cleanup_requests()  # lets `memfit cleanup --pid PID` reach this process
    size = start
    for step in range(steps):
        size = batches.update()
        train_step(size)
        if not batches.changes:  # grow until told to stop
            batches.size += 1
    print("done: %d steps, final batch %d" % (steps, size))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
