import json

import pytest

from detcore.errors import DetcoreError
from detcore.tools.analyze_logs import load_json_log, plot_curves, series, train_time_stats


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


def _timed_log(path):
    # epoch 1: 9.0 (start-up), 1.0, 2.0 -> 1.5 without the first; epoch 2: 5.0, 3.0, 3.0 -> 3.0
    times = {1: [9.0, 1.0, 2.0], 2: [5.0, 3.0, 3.0]}
    records = [
        {"mode": "train", "epoch": e, "iter": i, "time": t}
        for e, ts in times.items()
        for i, t in enumerate(ts)
    ]
    records.insert(3, {"mode": "val", "epoch": 1, "iter": 3, "bbox_mAP": 0.1, "time": 100.0})
    return write_log(path, records)


def test_train_time_stats_drop_each_epochs_first_record(tmp_path):
    stats = train_time_stats(load_json_log(_timed_log(tmp_path / "t.log.json")))
    assert stats.epoch_means == {1: 1.5, 2: 3.0}
    assert (stats.slowest_epoch, stats.fastest_epoch) == (2, 1)
    assert stats.std_over_epochs == pytest.approx(0.75)  # population std of (1.5, 3.0)
    assert stats.mean_iter_time == pytest.approx((1 + 2 + 3 + 3) / 4)
    kept = train_time_stats(load_json_log(tmp_path / "t.log.json"), include_outliers=True)
    assert kept.epoch_means == {1: 4.0, 2: pytest.approx(11 / 3)}
    assert (kept.slowest_epoch, kept.fastest_epoch) == (1, 2)


def test_cal_train_time_command(tmp_path, capsys):
    from detcore.cli.main import main

    log = _timed_log(tmp_path / "t.log.json")
    assert main(["analyze-logs", "cal_train_time", str(log)]) == 0
    out = capsys.readouterr().out
    assert "slowest epoch 2, average time is 3.0000" in out
    assert "fastest epoch 1, average time is 1.5000" in out
    assert "time std over epochs is 0.7500" in out
    assert "average iter time: 2.2500 s/iter" in out
    empty = write_log(tmp_path / "e.log.json", [{"mode": "train", "epoch": 1, "iter": 0, "time": 1.0}])
    assert main(["analyze-logs", "cal_train_time", str(empty)]) == 1
    assert "--include-outliers" in capsys.readouterr().err
