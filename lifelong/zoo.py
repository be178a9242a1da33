"""The pretrained zoo: what `python -m lifelong pretrain` builds into pretrained/.

Each entry is a run chosen to show its paper's point. Runs are stored as float16, frozen
experts are written once and each run carries 256 test images a task, to keep the whole folder
within the 80 MB DESIGN.md allows (embedded and Fashion-MNIST runs together).
"""

from __future__ import annotations

_SMALL = {"channels": 16, "hidden": 64}  # the small networks of the real-data and variant runs

ZOO = [
    {
        "name": "lmvae-digits-glyphs-shapes",
        "family": "lmvae",
        # glyphs inverted (white background): the glyph set includes the digits 2-9, so
        # plain glyphs and digits overlap as domains and routing cannot tell them apart;
        # inverted they are a distinct domain, as in paper 000's MNIST/SVHN/Fashion sequences.
        "tasks": ["digits", "glyphs:invert", "shapes"],
        "epochs": 30,
        "batch_size": 64,
        "seed": 0,
        # assign_on spelt out: eq. 3 at the end of each task on its data (Alg. 1 l. 11), the
        # library default since the option exists; runs made before it read "incoming".
        "set": {"latent_dim": 10, "assign_on": "finished"},
        "about": "L-MVAE (paper 000) over three embedded domains, one expert per task: at the end "
        "of each task eq. 3 freezes the free expert that fits it best as its depository (Alg. 1 "
        "l. 11), test images are routed by eq. 7.",
    },
    {
        "name": "vae-digits-glyphs-shapes",
        "family": "vae",
        "tasks": ["digits", "glyphs:invert", "shapes"],
        "epochs": 30,
        "batch_size": 64,
        "seed": 0,
        "set": {"latent_dim": 10},
        "about": "Baseline: one VAE with an L-MVAE expert's network, fine-tuned task after "
        "task on the same sequence: it forgets (compare it on the Forgetting page).",
    },
    {
        "name": "vae-joint-digits-glyphs-shapes",
        "family": "vae",
        "tasks": ["digits", "glyphs:invert", "shapes"],
        "epochs": 30,
        "batch_size": 64,
        "seed": 0,
        "set": {"latent_dim": 10, "joint": True},
        "about": "Upper bound (JVAE): the same VAE trained once on the union of the tasks.",
    },
    {
        "name": "ewc-digits-glyphs-shapes",
        "family": "ewc",
        "tasks": ["digits", "glyphs:invert", "shapes"],
        "epochs": 30,
        "batch_size": 64,
        "seed": 0,
        "set": {"latent_dim": 10},
        "about": "Baseline (paper 001 Sec. 5): the VAE with EWC's diagonal-Fisher penalty; "
        "on average over tasks it forgets less than the fine-tuned VAE, more than L-MVAE.",
    },
    {
        "name": "lgm-digits-glyphs-shapes",
        "family": "lgm",
        "tasks": ["digits", "glyphs:invert", "shapes"],
        "epochs": 20,
        "batch_size": 64,
        "seed": 0,
        # Beyond the paper (LGMConfig): the task anchor, the authors' z_d information bonus
        # and detach_q, with lambda = 1, so that fixing z_d generates one task (Figs. 5b, 12b);
        # eq. 10 alone does not (docs/claims.md, "Tying z_d to the task": seeds and ablations).
        "set": {
            "latent_dim": 10,
            "task_anchor": 2.0,
            "zd_info": 3.0,
            "info_lambda": 1.0,
            "detach_q": True,
        },
        "about": "LGM (paper 001): a student-teacher VAE replaying the teacher's generations "
        "(pi = 1/(k+1)); z_d grows by one category per task. Trained with terms beyond the "
        "paper (task anchor 2, the authors' z_d information bonus 3, lambda = 1, the bounds' "
        "reader Q held fixed), because eq. 10 alone leaves the tasks mixed on the codes: here "
        "z_d fixed to a task's code generates that task (Generation page, eval task_shares).",
    },
    {
        "name": "mvae-beta10-digits-glyphs-shapes",
        "family": "mvae",
        "tasks": ["digits", "glyphs:invert", "shapes"],
        "epochs": 15,
        "batch_size": 64,
        "seed": 0,
        "set": {"beta": 10.0},
        "eval": "iwelbo,ssim,frechet,fitting,mig,dci,forward,drift,components",
        "about": "MVAE (paper 002) on the union of the three domains, K = 4 components mixed "
        "by Dirichlet weights, dHSIC weight beta = 10: compare its dHSIC heatmap with the "
        "beta = 0 run (Fig. 12) and its mismatched encoder/sub-decoder grid (Figs. 3, 7).",
    },
    {
        "name": "mvae-beta0-digits-glyphs-shapes",
        "family": "mvae",
        "tasks": ["digits", "glyphs:invert", "shapes"],
        "epochs": 15,
        "batch_size": 64,
        "seed": 0,
        "set": {"beta": 0.0},
        "eval": "iwelbo,ssim,frechet,fitting,mig,dci,forward,drift,components",
        "about": "MVAE without the dHSIC regulariser (beta = 0): the components' latent spaces "
        "depend on each other more (dHSIC heatmap beside the beta = 10 run).",
    },
    {
        "name": "cpvae-textured10",
        "family": "cpvae",
        # Table 2's setting (Sec. 4.3): one population per class, so eqs. 7-8 choose among ten
        "tasks": [f"textured:classes={c}" for c in range(10)],
        "epochs": 80,
        "batch_size": 64,
        "seed": 0,
        # App. B.1 anneals alpha per MNIST-sized epoch; counted per 6,000 images here (the
        # digits are 1,501), so the private codes carry the digits before alpha grows.
        # Sizes and augmentation are App. B.1's for Grassy-MNIST (shared 30, private 5, shifts
        # up to 10 %): eq. 6 charges no KL on a population's own private codes, and with
        # B.2's 10 / 10 and no shifts they drifted 54 nats from the prior that eq. 7 scores
        # them under, so another population's decoder won (measured with two populations: 44 %
        # with 16 samples, 31 % with 128; cpvae_marginal.py); here they cost ~18 nats. 16
        # channels / 64 hidden keep ten populations' networks at 2.4 MB (at the default
        # networks 9.5 MB: 91.2 % against 94.3 % here, docs/readings.md section 5).
        "set": {
            "alpha_epoch_images": 6000,
            "latent_dim": 30,
            "private_dim": 5,
            "translate": 0.1,
            **_SMALL,
        },
        "eval": "iwelbo,ssim,frechet,ari,populations,drift",
        "about": "CPVAE (paper 004) on the Grassy-MNIST analogue in Table 2's setting: one "
        "population per digit class over faint grass-like textures, App. B.1's sizes and "
        "shifts; eqs. 7-8 choose among ten (chance 10 %). The shared z holds the texture, "
        "each private t_k its digit's style (Shared / private page). Table 1 is "
        "`cpvae-grassy`'s.",
    },
    # Table 1's pair (Sec. 4.1): CPVAE with alpha = 1 (not annealed, Table 1's row) and a plain
    # VAE with the same networks and total latent size, both on the strong texture (as bright
    # as the digits, like real grass: over the faint one a VAE clusters the digits about as
    # well as the private codes, tests/models/test_cpvae.py) and, as in Sec. 4.1, without
    # App. B.1's shifts. 16 channels / 64 hidden keep the pair at ~1 MB (pretrained/ <= 80 MB);
    # measured at this size, seeds 0-1: private / VAE ARI .66 / .46 and .58 / .54.
    {
        "name": "cpvae-grassy",
        "family": "cpvae",
        "tasks": ["textured:classes=0-4:level=strong", "textured:classes=5-9:level=strong"],
        "epochs": 80,
        "batch_size": 64,
        "seed": 0,
        "set": {
            "latent_dim": 30,
            "private_dim": 5,
            "alpha_anneal": False,
            "channels": 16,
            "hidden": 64,
        },
        "eval": "iwelbo,ssim,ari,populations,drift",
        "about": "CPVAE (paper 004) for Table 1 and Fig. 2: digits 0-4 and 5-9 over a texture "
        "as bright as the digits, alpha = 1; k-means ARI of the digits within a population is "
        "higher in the private codes than in `vae-grassy`'s codes, and ~0 in the shared ones. "
        "Trained without shifts as in Sec. 4.1, so eqs. 7-8 are not its point (that is "
        "`cpvae-textured10`'s).",
    },
    {
        "name": "vae-grassy",
        "family": "vae",
        "tasks": ["textured:classes=0-4:level=strong", "textured:classes=5-9:level=strong"],
        "epochs": 80,
        "batch_size": 64,
        "seed": 0,
        "set": {"joint": True, "latent_dim": 35, "channels": 16, "hidden": 64},
        "eval": "iwelbo,ssim,ari,drift",
        "about": "Table 1's plain VAE beside `cpvae-grassy`: same data, networks and total "
        "latent size (35), both populations at once; its codes are spent on the texture too.",
    },
]


ZOO.append(
    {
        "name": "infogan-digits-split",
        "family": "infogan",
        "tasks": ["digits:classes=0-4", "digits:classes=5-9"],
        "epochs": 100,
        "batch_size": 64,
        "seed": 0,
        # 2e-4 rather than the paper's 1e-4: ~1,200 generator steps per task is what a CPU
        # rebuild affords, and at 1e-4 the samples were still blobs after ~350 steps. With
        # mi_lambda = 1 and |z| = 16, d stayed unused through task 0 (L_MI's d term ~0 nats
        # for 1,200 steps; z carried the class); mi_lambda = 5 and |z| = 8 make d reach
        # log 10 nats and pick the digit's form (Generation grid columns).
        "set": {"lr": 2e-4, "mi_lambda": 5.0, "noise_dim": 8},
        "eval": "iwelbo,ssim,frechet",
        "about": "Lifelong InfoGAN (paper 003): WGAN-GP with an MI auxiliary network S over "
        "digits 0-4 then 5-9, replaying the frozen previous generator: the Generation grid "
        "puts d along columns and c along rows (Fig. 3); S stands in for the encoder.",
    }
)


# The real-data zoo (issue 15): one class-incremental Fashion-MNIST sequence of five tasks (two
# classes each, Fashion-MNIST's label order), learnt by every lifelong family and baseline with
# the same budget (10 epochs a task, batch 64, seed 0) and the same small networks (16 channels,
# 64 hidden: an expert is 0.2 MB in float16, so the 15 expert states of L-MVAE's five snapshots
# fit the 80 MB folder), so the Forgetting page can put any two side by side. These runs need
# the Debian package dataset-fashion-mnist; without it `pretrain` skips them in one line each.
FASHION5 = [f"fashion:classes={2 * t}-{2 * t + 1}" for t in range(5)]


def _fashion(name: str, family: str, about: str, **kw) -> dict:
    entry = {
        "name": name,
        "family": family,
        "tasks": FASHION5,
        "epochs": 10,
        "batch_size": 64,
        "seed": 0,
        "set": {"latent_dim": 10, **_SMALL},
        "eval": "iwelbo,ssim,frechet,forward,drift",
        "about": about,
    }
    entry["set"].update(kw.pop("set", {}))
    entry.update(kw)
    return entry


ZOO += [
    _fashion(
        "lmvae-fashion5",
        "lmvae",
        "L-MVAE (paper 000) over Fashion-MNIST's classes in five tasks of two, one expert per "
        "task: eq. 3 freezes the expert that fits each finished task best, eq. 7 routes.",
    ),
    _fashion(
        "vae-fashion5",
        "vae",
        "Baseline: one VAE with an L-MVAE expert's network fine-tuned over the five tasks.",
    ),
    _fashion(
        "vae-joint-fashion5",
        "vae",
        "Upper bound (JVAE): the same VAE trained once on the union of the five tasks.",
        set={"joint": True},
    ),
    _fashion(
        "ewc-fashion5",
        "ewc",
        "Baseline (paper 001 Sec. 5): the fine-tuned VAE with EWC's diagonal-Fisher penalty.",
    ),
    _fashion(
        "lgm-fashion5",
        "lgm",
        "LGM (paper 001) with the embedded run's terms beyond the paper (task anchor 2, z_d "
        "information bonus 3, lambda = 1, Q held fixed): replay of the teacher's generations.",
        set={"task_anchor": 2.0, "zd_info": 3.0, "info_lambda": 1.0, "detach_q": True},
        eval="iwelbo,ssim,frechet,forward,drift,task_shares",
    ),
    _fashion(
        "infogan-fashion5",
        "infogan",
        "Lifelong InfoGAN (paper 003) over the five tasks with the frozen previous "
        "generator's replay; d along the Generation grid's columns.",
        set={"lr": 2e-4, "mi_lambda": 5.0, "noise_dim": 8, "latent_dim": 2},
        eval="ssim,frechet,forward",
    ),
    *(
        _fashion(
            f"mvae-beta{beta}-fashion",
            "mvae",
            about,
            set={"beta": float(beta)},
            epochs=5,  # on the union: 300,000 images, half what a lifelong run sees in 5 tasks
            eval="iwelbo,ssim,frechet,drift,components",
        )
        for beta, about in (
            (10, "MVAE (paper 002), K = 4, dHSIC weight beta = 10, on the union of the tasks."),
            (0, "MVAE without the dHSIC regulariser (beta = 0), beside the beta = 10 run."),
        )
    ),
    _fashion(
        "cpvae-fashion10",
        "cpvae",
        "CPVAE (paper 004) in Table 2's setting: one population per Fashion-MNIST class, "
        "eqs. 7-8 choose among ten (chance 10 %).",
        tasks=[f"fashion:classes={c}" for c in range(10)],
        epochs=5,
        set={"latent_dim": 10, "private_dim": 5, "alpha_epoch_images": 6000, "translate": 0.1},
        eval="iwelbo,ssim,populations",
    ),
]


# Variants the papers build on, each at the small networks and 256 evaluation images a task, the
# least their figures need (issue 15: pretrained/ holds every run within 80 MB). The embedded
# ones train in about a minute each on one core.
def _variant(name: str, family: str, tasks: list[str], about: str, **kw) -> dict:
    entry = {
        "name": name,
        "family": family,
        "tasks": tasks,
        "epochs": 30,
        "batch_size": 64,
        "seed": 0,
        "set": {"latent_dim": 10, **_SMALL},
        "about": about,
    }
    entry["set"].update(kw.pop("set", {}))
    entry.update(kw)
    return entry


# 10 labels per task (d has 10 categories): the digits, then the first ten glyphs inverted. Two
# tasks: a supervised expert is 0.34 MB and L-MVAE trains every free expert, so three tasks
# would store six expert states (2.7 MB a run).
SUPERVISED_TASKS = ["digits", "glyphs:classes=0-9:invert"]

ZOO += [
    _variant(
        "lmvae-dyn-digits",
        "lmvae",
        # a rotated repeat of task 0 and a novel domain; S* = 7 pixel units sits between the
        # repeat's distance to the digits expert (5.1) and the shapes' nearest (8.8), measured
        # at these settings: the paper also sets S* per sequence (600, 400; Sec. VII-I)
        ["digits", "glyphs:invert", "digits:rotate=20", "shapes"],
        "L-MVAE-Dyn (paper 000 Sec. VI, VII-I): starts with one expert, adds one when every "
        "expert is farther than S* from a new task (eqs. 24-25) and reuses the nearest "
        "otherwise: digits rotated by 20 degrees go back to the digits expert, shapes get a "
        "new one (Expert timeline).",
        set={"dynamic": True, "novelty_threshold": 7.0},
        eval="iwelbo,ssim,frechet,forward,drift",
    ),
    *(
        _variant(
            f"lmvae-{kind}-digits",
            "lmvae",
            SUPERVISED_TASKS,
            about,
            set={"supervision": kind, "n_classes": 10, **extra},
            eval="iwelbo,ssim,forward,drift",
        )
        for kind, extra, about in (
            (
                "supervised",
                {},
                "Supervised L-MVAE (paper 000 eqs. 18-21): each expert adds a class encoder "
                "q(d|x) and decodes [z, d], reading the label in training (readings.md, 6); "
                "class accuracy per task on the Forgetting page (Table I's setting: labels in "
                "every task).",
            ),
            (
                "semi",
                {"label_fraction": 0.1},
                "Semi-supervised L-MVAE (paper 000 eqs. 22-23, beta = 0.5): 10 % of each "
                "task's training images keep their label (Table II's setting: 1,000 MNIST, "
                "10,000 of the others); class accuracy per task on the Forgetting page.",
            ),
        )
    ),
    _variant(
        "lmvae-capacity-shapes",
        "lmvae",
        ["shapes", "digits"],
        "L-MVAE with the disentangled objective of eq. 17 (gamma = 4, C rising to 25 nats in "
        "each task; Sec. VII-D), behind the traversal figures (Figs. 7-8): slide one latent "
        "of the chosen expert from -3 to 3 on the Latent traversal page; MIG and DCI against "
        "the shapes' factors.",
        set={"objective": "capacity", "gamma": 4.0, "capacity_max": 25.0},
        eval="iwelbo,ssim,mig,dci,forward,drift",
    ),
    *(
        _fashion(
            f"mvae-gs-beta{beta}-fashion",
            "mvae",
            "MVAE-GS (paper 002 Sec. III-D, Fig. 12): K = 6 components with Gumbel-softmax "
            f"dropout, 2 latents each, dHSIC weight beta = {beta} (compare the beta = {other} "
            "run's dHSIC heatmap); the Expert timeline lists pruned components.",
            tasks=["fashion"],
            epochs=5,
            set={
                "beta": float(beta),
                "n_components": 6,
                "latent_dim": 2,
                "dropout": "gs",
            },
            eval="iwelbo,ssim,frechet,components",  # one task: no drift to follow
        )
        for beta, other in ((1, 10), (10, 1))
    ),
    *(
        _variant(
            f"{family}-seq-textured",
            family,
            [f"textured:classes={c}" for c in range(5)],
            about,
            epochs=100,
            # 8 channels / 32 hidden: a phase rewrites the shared networks (0.44 MB a snapshot
            # at 16 / 64), and ~150 images a class need no more
            set={**cfg, "channels": 8, "hidden": 32},
            eval="iwelbo,ssim,forward,drift",
        )
        for family, cfg, about in (
            (
                "cpvae",
                # App. B.2: shared 10, private 10; lr 1e-4 after the first phase
                {"sequential": True, "first_phase": 2, "private_dim": 10},
                "CPVAE in sequence (paper 004 Sec. 4.4): five digit classes over shared "
                "textures, one population each; classes 0 and 1 learnt together with eq. 6, "
                "then one a phase with the ELBO at lr 1e-4. Forgetting page: beside "
                "`vae-seq-textured`, earlier populations keep their reconstructions (Fig. 5).",
            ),
            (
                "vae",
                {"latent_dim": 60},
                "Sec. 4.4's VAE beside `cpvae-seq-textured`: the same five classes in "
                "sequence, total latent size 60 as CPVAE's (10 shared + 5 x 10 private).",
            ),
        )
    ),
]


# Every run carries 256 test images a task (evaldata.py): enough for its pages and the claims'
# figures where the dataset is absent, and what keeps pretrained/ within 80 MB.
for _entry in ZOO:
    _entry.setdefault("eval_images", 256)


def write_index(root) -> None:
    """pretrained/README.md: what each shipped run is and how it was made."""
    from pathlib import Path

    from lifelong.explore.summary import run_report
    from lifelong.runs import RunError, open_run

    root = Path(root)
    lines = [
        "# Pretrained runs",
        "",
        "Built by `python -m lifelong pretrain` (CPU or GPU; `--only NAME` rebuilds one run)."
        " Snapshots are float16 safetensors; frozen experts are stored once. Each run carries"
        " its evaluation images (`evaldata-NN.safetensors`), so it opens anywhere.",
        "",
        "| run | family | tasks | how it was made | what it shows | headline |",
        "|---|---|---|---|---|---|",
    ]
    for entry in ZOO:
        try:
            run = open_run(root / entry["name"])
        except RunError:
            continue
        s = run_report(run)["summary"]
        acc = s.get("routing_accuracy_final")
        mse = run.metric("mse")
        head = []
        if acc and any(a is not None for a in acc):
            head.append("routing " + "/".join(f"{100 * a:.1f}%" for a in acc if a is not None))
        if mse:
            head.append("final MSE " + "/".join(f"{v:.4f}" for v in mse[-1]))
        grown = [e for e in run.events if e.kind in ("expert_added", "expert_reused")]
        if any(e.kind == "expert_reused" for e in grown):  # L-MVAE-Dyn
            head.append(
                "experts per task "
                + ", ".join(
                    f"{e.expert}{'' if e.kind == 'expert_added' else ' (reused)'}" for e in grown
                )
            )
        classes = s.get("class_accuracy_final")
        if classes and any(a is not None for a in classes):  # supervised / semi L-MVAE
            head.append(
                "class accuracy " + "/".join(f"{100 * a:.1f}%" for a in classes if a is not None)
            )
        pops = run.manifest.get("eval", {}).get("metrics", {}).get("populations")
        if pops:  # paper 004's Tables 1-2, stored by `eval --metrics populations`
            v = pops["value"]
            head.append(f"eqs. 7-8 population accuracy {100 * v['accuracy']:.1f}%")
            within = [row[2] for row in v["ari"]["values"]]
            if None not in within:  # one class per population (Table 2) has no such ARI
                head.append(
                    "ARI of the classes within a population: shared {:.3f}, private {:.3f}".format(
                        *within
                    )
                )
        ari = run.manifest.get("eval", {}).get("metrics", {}).get("ari")
        if ari and not pops and entry["tasks"][0].startswith("textured"):  # Table 1's VAE
            head.append(
                "ARI of the classes within a population: "
                + "/".join(f"{a:.3f}" for a in ari["value"][-1] if a is not None)
            )
        how = (
            f"`--epochs {entry['epochs']} --batch-size {entry['batch_size']} --seed "
            f"{entry['seed']}" + "".join(f" --set {k}={v}" for k, v in entry["set"].items()) + "`"
        )
        lines.append(
            f"| `{entry['name']}` | {entry['family']} | {','.join(entry['tasks'])} | "
            f"{how} | {entry['about']} | {'; '.join(head)} |"
        )
    from lifelong import claims

    lines += [
        "",
        "## The papers' claims on these runs",
        "",
        "Each figure is read from what `python -m lifelong eval` stored in the runs named "
        "(`lifelong/claims.py`); README.md quotes this table.",
        "",
        claims.markdown(claims.rows(root)),
    ]
    (root / "README.md").write_text("\n".join(lines) + "\n")
