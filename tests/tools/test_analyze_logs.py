import json

import pytest

from detcore.errors import DetcoreError
from detcore.tools.analyze_logs import load_json_log, plot_curves, series


def write_log(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_series_and_plot(tmp_path):
    log = write_log(
        tmp_path / "run.log.json",
        [
            {"mode": "train", "epoch": 1, "iter": 10, "loss": 3.0},
            {"mode": "train", "epoch": 1, "iter": 20, "loss": 2.0},
            {"mode": "val", "epoch": 1, "iter": 20, "bbox_mAP": 0.25},
            {"mode": "train", "epoch": 2, "iter": 30, "loss": 1.5},
            {"mode": "val", "epoch": 2, "iter": 40, "bbox_mAP": 0.5},
        ],
    )
    records = load_json_log(log)
    assert series(records, "train", "loss") == ([10, 20, 30], [3.0, 2.0, 1.5])
    assert series(records, "val", "bbox_mAP") == ([20, 40], [0.25, 0.5])
    pytest.importorskip("matplotlib")
    out = plot_curves([log], tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DetcoreError, match="none of \\['nope'"):
        plot_curves([log], tmp_path / "x.png", train_keys=["nope"], val_keys=[])


def test_malformed_line_names_file_and_line(tmp_path):
    log = tmp_path / "bad.log.json"
    log.write_text('{"mode": "train", "loss": 1}\n{oops\n')
    with pytest.raises(DetcoreError, match="bad.log.json:2: not a JSON object"):
        load_json_log(log)
