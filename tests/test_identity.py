"""Issue 21's measures against hand computations: zero-shot identity, leakage survival, token similarity, the
memorisation screen's summary, CustomConcept101's formulas; CI coverage on simulated data; the label and
leakage prompt files. Pure numpy (no networks)."""

import numpy as np
import pytest

from core.errors import UserError
from core.identity import (
    article,
    ensemble,
    identity_rows,
    leakage_rows,
    rate_ci,
    screen_rows,
    survives,
    token_similarity_row,
    zero_shot_top,
)
from core.protocol import check_protocol, clip_t, mean_pairwise, protocol_rows
from core.stats import bootstrap_ci
from core.token_similarity import eot_positions


def angle(deg):
    r = np.deg2rad(deg)
    return np.array([np.cos(r), np.sin(r)])


def test_rate_ci_by_hand():
    r = rate_ci([1, 0, 1, 1], n_boot=500)
    assert r["rate"] == 0.75 and r["n"] == 4 and r["k"] == 3
    assert 0 <= r["ci_lo"] <= 0.75 <= r["ci_hi"] <= 1
    none = rate_ci([0] * 10)
    # Clopper-Pearson, k = 0: upper = 1 - (alpha/2)^(1/n), alpha = 0.05
    assert none["rate"] == 0 and none["ci_lo"] == 0
    assert none["ci_hi"] == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    assert "Clopper" in none["ci_method"]
    every = rate_ci([1] * 10)
    assert every["ci_hi"] == 1 and every["ci_lo"] == pytest.approx(0.025 ** (1 / 10), abs=1e-9)
    assert rate_ci([])["rate"] is None


def test_zero_shot_identity_by_hand():
    labels = np.stack([angle(0), angle(90), angle(180)])  # subject, initializer class, a distractor
    images = np.stack([angle(10), angle(80), angle(30), angle(170), angle(-20), angle(60)]) * 3.0  # not unit
    assert zero_shot_top(images, labels).tolist() == [0, 1, 0, 2, 0, 1]
    rows = identity_rows([0, 0, 0, 5, 5, 5], images, labels, n_boot=300)
    assert [r["step"] for r in rows] == [0, 5]
    assert rows[0]["rate"] == pytest.approx(2 / 3) and rows[0]["n"] == 3 and rows[0]["k"] == 2
    assert rows[1]["rate"] == pytest.approx(1 / 3) and rows[1]["k"] == 1
    for r in rows:
        assert r["ci_lo"] <= r["rate"] <= r["ci_hi"]


def test_leakage_survival_and_change_by_hand():
    cls = angle(90)  # "a picture of a cat"
    second = np.stack([angle(0)] * 4 + [angle(0)] * 4)  # "a picture of a dog" for every image
    # step 0: images lean to the dog (3 of 4 survive); step 10: the cat took over (1 of 4)
    imgs = np.stack([angle(10), angle(20), angle(30), angle(80), angle(60), angle(70), angle(85), angle(40)])
    s = survives(imgs, second, cls)
    assert s.tolist() == [True, True, True, False, False, False, False, True]
    keys = ["p0", "p1", "p2", "p3"] * 2
    rows = leakage_rows([0] * 4 + [10] * 4, keys, s, n_boot=400)
    assert rows[0]["survival"] == 0.75 and rows[1]["survival"] == 0.25
    assert rows[0]["change"] == 0 and rows[0]["n_paired"] == 4
    # paired by prompt: (0-1) + (0-1) + (0-1) + (1-0) over 4 = -0.5
    assert rows[1]["change"] == pytest.approx(-0.5) and rows[1]["change_lo"] <= -0.5 <= rows[1]["change_hi"]
    no_base = leakage_rows([10, 10], ["a", "b"], [True, False], n_boot=100)
    assert no_base[0]["change"] is None and no_base[0]["n_paired"] == 0


def test_token_similarity_row_by_hand():
    refs = np.stack([angle(0), angle(60), angle(-60)])
    row = token_similarity_row(20, angle(0) * 5, refs, subject_feature=angle(45), init_feature=angle(90),
                               distractor_features={"a mouse": angle(180)}, n_boot=300)
    assert row["step"] == 20 and row["n_references"] == 3
    assert row["vs_references"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    lo, hi = row["vs_references_ci"]
    assert 0.5 <= lo <= row["vs_references"] <= hi <= 1.0
    assert row["vs_subject"] == pytest.approx(np.sqrt(0.5))
    assert row["vs_init"] == pytest.approx(0.0, abs=1e-12)
    assert row["vs_distractors"] == {"a mouse": pytest.approx(-1.0)}
    assert token_similarity_row(0, angle(0), refs, None, angle(0), {})["vs_subject"] is None


def test_ensemble_is_the_normalised_mean_of_unit_features():
    f = ensemble(np.stack([angle(0) * 2, angle(90) * 7]))
    assert f == pytest.approx(angle(45))


def test_screen_rows_by_hand():
    steps = [0] * 20 + [10] * 4 + [20] * 3
    base = list(np.arange(1.0, 21.0))  # 1..20: 95th percentile (linear) = 19.05
    gaps = base + [5.0, 19.5, 30.0, None] + [1.0, 2.0, 3.0]
    rows = {r["step"]: r for r in screen_rows(steps, gaps, n_boot=300)}
    assert rows[0]["threshold"] == pytest.approx(19.05)
    assert rows[0]["flagged"] == pytest.approx(1 / 20)  # only the 20
    assert rows[10]["n"] == 3 and rows[10]["n_missing"] == 1
    assert rows[10]["flagged"] == pytest.approx(2 / 3) and rows[10]["max"] == 30.0
    assert rows[10]["median"] == 19.5 and rows[10]["mean"] == pytest.approx(54.5 / 3)
    assert rows[20]["flagged"] == 0 and rows[20]["ci_hi"] > 0  # exact bound, not a zero-width interval
    old = screen_rows([0, 10], [None, None])
    assert old[0]["n"] == 0 and old[0]["threshold"] is None and old[1]["flagged"] is None


def test_protocol_formulas_by_hand():
    assert clip_t([0.3, -0.2, 0.1]) == pytest.approx(2.5 * (0.3 + 0.0 + 0.1) / 3)
    g = np.array([[1.0, 0.0], [0.0, 2.0]])
    r = np.array([[1.0, 1.0], [3.0, 0.0]])
    # cosines: g0.r0 = 1/sqrt2, g0.r1 = 1, g1.r0 = 1/sqrt2, g1.r1 = 0
    assert mean_pairwise(g, r) == pytest.approx((2 / np.sqrt(2) + 1) / 4)
    rows = protocol_rows([0, 0, 5], [0.2, -0.1, 0.4], [0.5, 0.7, 0.9], dino_means=[0.1, 0.3, 0.5])
    assert rows[0] == {"step": 0, "n": 2, "clip_t": pytest.approx(0.25), "clip_i": pytest.approx(0.6),
                       "dino": pytest.approx(0.2)}
    assert rows[1]["clip_t"] == pytest.approx(1.0) and protocol_rows([1], [0.1], [0.2])[0]["dino"] is None


def test_protocol_option_errors(tmp_path):
    check_protocol("", "ViT-L-14", None)
    check_protocol("customconcept101", "ViT-B-32", None)
    with pytest.raises(UserError, match="ViT-B-32"):
        check_protocol("customconcept101", "ViT-L-14", None)
    with pytest.raises(UserError, match="only with --protocol"):
        check_protocol("", "ViT-B-32", str(tmp_path))
    with pytest.raises(UserError, match="not a file"):
        check_protocol("customconcept101", "ViT-B-32", str(tmp_path / "nope.pth"))
    with pytest.raises(UserError, match="use one of"):
        check_protocol("dreambench", "ViT-B-32", None)


def test_rate_ci_covers_the_true_rate_on_simulated_data():
    """95% intervals over 400 simulated checkpoints of 40 images: the share that contains the true rate."""
    rng = np.random.default_rng(0)
    for p in (0.1, 0.5):
        covered = 0
        for _ in range(400):
            r = rate_ci(rng.random(40) < p, n_boot=400, seed=int(rng.integers(1 << 30)))
            covered += r["ci_lo"] <= p <= r["ci_hi"]
        assert 0.90 <= covered / 400 <= 0.99, (p, covered / 400)


def test_mean_ci_covers_on_simulated_cosines():
    """vs_references' interval (bootstrap over 20 reference cosines) covers the true mean ~95% of the time."""
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(400):
        _, lo, hi = bootstrap_ci(rng.normal(0.3, 0.05, 20), n_boot=400, seed=int(rng.integers(1 << 30)))
        covered += lo <= 0.3 <= hi
    assert 0.89 <= covered / 400 <= 0.99, covered / 400


def test_eot_position_is_the_first_end_of_text_not_the_argmax():
    ids = np.full((2, 77), 49407)
    ids[0, :5] = [49406, 320, 1125, 539, 49408]  # "a photo of <tom-cat>": the placeholder id is above EOT's
    ids[1, :4] = [49406, 320, 2368, 539]
    assert eot_positions(ids).tolist() == [5, 4]
    assert int(np.argmax(ids[0])) == 4  # what CLIP's argmax would (wrongly) pick here
    with pytest.raises(ValueError, match="end-of-text"):
        eot_positions(np.zeros((1, 77), dtype=int))


def test_article():
    assert article("cat") == "a cat" and article("owl") == "an owl"


def test_label_and_leakage_files():
    from core.prompts import IDENTITY_LABELS_FILE, LEAKAGE_FILE, load_categories, load_labels, load_templates

    labels = load_labels(IDENTITY_LABELS_FILE)
    assert len(labels) >= 8 and any("mouse" in x for x in labels) and any("real" in x for x in labels)
    subjects = load_categories(LEAKAGE_FILE, key="subject")
    assert set(subjects) == set(load_templates(LEAKAGE_FILE)) and "a dog" in subjects.values()
    assert subjects["{} and a small brown mouse in a kitchen"] == "a small brown mouse"


def test_bad_label_files(tmp_path):
    from core.prompts import load_categories, load_labels

    f = tmp_path / "labels.txt"
    f.write_text("a cat\n{} twice\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"labels.txt:2: .*plain text"):
        load_labels(f)
    f.write_text("a cat\na cat\n", encoding="utf-8")
    with pytest.raises(UserError, match="listed twice"):
        load_labels(f)
    f.write_text("# only comments\n", encoding="utf-8")
    with pytest.raises(UserError, match="no labels"):
        load_labels(f)
    g = tmp_path / "leak.txt"
    g.write_text("a dog next to {}\n", encoding="utf-8")
    with pytest.raises(UserError, match="before any '# subject:"):
        load_categories(g, key="subject")
