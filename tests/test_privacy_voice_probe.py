"""The emotion probe of the voice benchmark (edge_app/eval/emotion_probe.py): cheap checks."""

from __future__ import annotations

import numpy as np

from edge_app.eval.emotion_probe import (
    PROSODY_NAMES,
    prosody_features,
    running_prior,
    session_normalise,
)


def test_session_normalise_uses_each_sessions_own_statistics():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(5, 2, (30, 3)), rng.normal(-1, 0.5, (20, 3))])
    g = np.repeat([1, 2], [30, 20])
    Z = session_normalise(X, g)
    for s in (1, 2):
        assert np.allclose(Z[g == s].mean(axis=0), 0, atol=1e-9)
        assert np.allclose(Z[g == s].std(axis=0), 1, atol=1e-2)
    # a constant per-session offset and scale (what a fixed per-session warp does to a
    # feature, to first order) disappears
    assert np.allclose(session_normalise(3 * X + 7, g), Z, atol=1e-2)


def test_running_normalisation_only_looks_back():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 2))
    g = np.zeros(10, int)
    order = np.arange(10)
    prior = running_prior(rng.normal(size=(40, 2)), np.repeat(np.arange(4), 10))
    Z = session_normalise(X, g, "running", order, prior)
    X2 = X.copy()
    X2[6:] += 100.0  # the future changes: earlier outputs must not
    Z2 = session_normalise(X2, g, "running", order, prior)
    assert np.allclose(Z[:6], Z2[:6])


def test_prosody_features_follow_pitch_and_are_finite():
    sr = 16_000
    t = np.arange(int(1.5 * sr)) / sr
    feats = {}
    for f in (120.0, 240.0):
        x = 0.3 * np.sign(np.sin(2 * np.pi * f * t)) * np.hanning(len(t))  # harmonic-rich tone
        feats[f] = prosody_features(x.astype(np.float32), sr)
        assert feats[f].shape == (len(PROSODY_NAMES),)
        assert np.all(np.isfinite(feats[f]))
    assert abs(feats[120.0][0] - np.log2(120.0)) < 0.1
    assert abs(feats[240.0][0] - feats[120.0][0] - 1.0) < 0.1  # one octave apart
