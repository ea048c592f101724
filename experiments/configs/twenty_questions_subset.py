"""ArCHer on the Twenty Questions Subset (ArCHer paper): the same game as
twenty_questions.py, but only 10 objects are ever hidden (football, dog, banana, truck,
pants, computer, piano, chair, pen, scissors).

    python -m experiments.run --config=experiments/configs/twenty_questions_subset.py:demo --workdir=/tmp/tqs_demo

Variants (the part after ':'):
  paper  (default) GPT-2 actor and RoBERTa-base critic from Hugging Face weights, the
         paper's hyperparameters; for a TPU/GPU host.
  demo   CPU, no downloads, as twenty_questions.py:demo with all 10 objects hidden,
         30 ArCHer iterations, an asymmetric critic and 9 actor steps per iteration. The scripted players that make the data know all 157
         objects, not the ten (59% wins, return -13.9), so an agent that learns which
         ten occur has much room (results and times: README, Results and
         docs/results.md).
  mistral the reference's large-model recipe (its archer_llm_20q.yaml): a
         Mistral-7B-Instruct-v0.2 actor with LoRA (rank 16, alpha 32, on q, k, v, o),
         bfloat16 weights and rematerialised blocks, the RoBERTa-base critic, actor lr
         2e-6, critic lr 1e-5, 32 rollouts, 20 critic steps and 1 actor step per
         iteration, 64-token utterances; FSDP over every device. For a TPU slice:
         `python -m experiments.memory_plan --config=twenty_questions_subset.py:mistral`
         says what one needs. The actor reads each observation in the instruct
         template of the reference's prompt (``MISTRAL_TEMPLATE``; the critic reads the
         bare observation, as there); here, as in the other variants, BC on the
         scripted data starts the actor.
  smoke  seconds; for tests.
"""

import dataclasses

from experiments.configs import common, twenty_questions


# Twenty Questions' paper hyperparameters and game, all 10 of its objects hidden, 30
# iterations. The critic also reads the hidden object (8 tokens before the conversation;
# the actor never does, and E over s given h of Q(h, s, a) = Q(h, a) keeps the policy
# gradient unbiased): the plain critic overrated the actor's own questions and one seed
# of three followed it below its BC start. With that critic's better ranking the
# actor's budget is the next limit, so 9 actor steps per iteration instead of 3 (with
# the plain critic 15 collapsed two seeds). Measured: docs/research_log.md, stop 35.
PRESETS = dataclasses.replace(twenty_questions.PRESETS, demo_items=0, demo_iterations=30,
                              demo_privileged_len=8, demo_actor_epochs=9)


def get_config(arg: str | None = None):
    if arg == "mistral":
        c = common.get_config("twenty_questions_subset", "paper", PRESETS)
        _mistral(c)
        return c
    return common.get_config("twenty_questions_subset", arg, PRESETS)


# The reference's prompt for the instruct actor (its llm_twenty_questions_subset.py), in
# Mistral's [INST] template with the BOS written out. One change: the reference asks for
# the question as JSON and reads all 64 new tokens; here an utterance is one line (BC's
# targets, config.tokens.terminator), so the prompt asks for that line.
MISTRAL_TEMPLATE = """<s>[INST]Please play Twenty Questions with me.
An example is:
Questions:
Is the object alive? Yes.
Is the object a mammal? No.
Is the object a plant? Yes.
Is the object edible? Yes.
Is the object a fruit? Yes.
Is the object a tropical fruit? Yes.
Is the object a banana? Yes.

Please continue this conversation by completing the next question.
{obs}
Please answer with the next question alone, on one line.
The possible hidden words are:
football, dog, banana, truck, pants, computer, piano, chair, pen, scissors.
[/INST]
"""


def _mistral(c) -> None:
    c.variant = "mistral"
    c.tokens.actor_template = MISTRAL_TEMPLATE
    c.mesh.shape = (1, -1, 1)  # FSDP: 7B bfloat16 weights (14.5 GB) do not fit one chip beside the rest
    c.actor.update(kind="llama", checkpoint="mistralai/Mistral-7B-Instruct-v0.2", dtype="bfloat16",
                   param_dtype="bfloat16", lora_rank=16, lora_alpha=32.0,
                   lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"), remat=True, lr=2e-6)
    c.critic.lr = 1e-5
    c.tokens.action_len = 64
    c.archer.update(rollout_size=32, rollout_batch=32, eval_size=32, critic_epochs=20, actor_epochs=1,
                    warmup_iter=20, batch_size=256, actor_batch_size=128)
