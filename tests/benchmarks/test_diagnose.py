"""The diagnosis script behind the README's "why GRAPE ties propagation on Adamson"."""

import json
import sys

import pytest
from conftest import ADAMSON, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import diagnose_model  # noqa: E402


@pytest.mark.skipif(not ADAMSON.exists(), reason="shared data slice not available")
def test_diagnosis_of_the_bundled_adamson_model(tmp_path, capsys):
    out = tmp_path / "d.json"
    assert diagnose_model.main(["--model", str(ROOT / "assets" / "models" / "adamson"),
                                "--data", str(ADAMSON), "--trajectory", "25", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    # the rebuilt warm start is exactly training's step 0 (the same seed, data and fit)
    assert result["held_out_mse_step0"] == pytest.approx(result["members_warm_start_mse"][0], rel=1e-5)
    assert [s["step"] for s in result["held_out_trajectory"]] == [0, 25]
    # every trained part receives gradient at the warm start: nothing is starved
    grads = result["member1_warm_start"]["gradient_norm"]
    for part in ("structure", "propagation", "self_head", "shared_amplitude"):
        assert grads[part] > 1e-4, part
    # training lowered the training loss of member 1
    assert result["member1_trained"]["fit"] < result["member1_warm_start"]["fit"]
    assert all(0 < v < 1 for v in result["noise_share"].values())
    assert set(result["pearson_delta"]) == {"grape", "warm_start", "propagation"}
    assert list(result["per_condition"]) == result["held_out"]
    assert all(-1 <= row["beyond_mean_agreement"] <= 1 for row in result["per_condition"].values())
    assert "pearson_delta" in capsys.readouterr().out
