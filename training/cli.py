"""`python -m training`: train, evaluate and export forecasters into the model repository.

    python -m training train --model lstm --data synthetic --horizon 10 --out models/lstm
    python -m training train --model gru --data rides.csv --date-column date --target rail \
        --covariates bus --train-end 2018-12-31 --valid-end 2019-05-31 --horizon 14 --kind seq2vec
    python -m training export --run runs/lstm --out models/lstm
    python -m training optimize models/lstm models/gru

The data is loaded and checked before TensorFlow is imported, so bad input fails in a second with one
message naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from training.errors import TrainingError
from training.tasks import Task, TaskConfig, build_task

MODELS = ("lstm", "gru", "wavenet", "simple_rnn", "conv_gru")


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    sub = root.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model, print its metrics table, export it")
    train.add_argument("--model", choices=MODELS, required=True)
    train.add_argument("--name", help="model name in the repository (default: the --model)")
    train.add_argument("--data", default="synthetic", help="'synthetic' or a CSV file path")
    train.add_argument("--horizon", type=positive, default=10, help="steps forecast per call")
    train.add_argument("--input-length", type=positive, default=50, help="context window")
    train.add_argument("--kind", choices=("seq2seq", "seq2vec"), default="seq2seq")
    train.add_argument("--epochs", type=positive, default=60)
    train.add_argument("--batch-size", type=positive, default=32)
    train.add_argument("--patience", type=positive, default=10, help="early-stopping patience")
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--loss", choices=("mse", "mae", "huber"), default="mse")
    train.add_argument(
        "--huber-delta", type=float, default=1.0, help="Huber threshold, in scaled target units"
    )
    train.add_argument("--units", type=positive, default=64, help="units or filters per layer")
    train.add_argument("--dropout", type=float, default=0.1, help="MC-dropout rate (0 disables)")
    train.add_argument(
        "--normalization",
        choices=("auto", "instance", "global"),
        default="auto",
        help="instance: each window's own mean and spread removed inside the graph and put back on "
        "the forecast (level shifts move the forecast with them); global: only the z-score fitted "
        "on the training part; auto (default): train both, keep the better on validation",
    )
    train.add_argument(
        "--allow-worse-than-baseline",
        action="store_true",
        help="export even when the model loses to the best baseline over the horizon",
    )
    train.add_argument("--seed", type=int, default=42)
    train.add_argument(
        "--ensemble",
        type=positive,
        default=1,
        metavar="N",
        help="train N members with seeds SEED..SEED+N-1 and export their averaged forecast as one "
        "graph (MC-dropout masks shared by the members)",
    )
    train.add_argument(
        "--synthetic-sizes",
        type=positive,
        nargs=3,
        default=[7000, 2000, 1000],
        metavar=("TRAIN", "VALID", "TEST"),
        help="series per split of the synthetic data",
    )
    csv = train.add_argument_group("CSV data")
    csv.add_argument("--date-column", default="date")
    csv.add_argument("--target", default="value", help="the column to forecast")
    csv.add_argument("--covariates", nargs="*", default=[], help="extra input columns")
    csv.add_argument(
        "--frequency",
        help="pandas frequency alias: D, h, min, W, MS, ME, QS, QE, YS, YE... (default: inferred; "
        "old aliases such as M, H, T, A are refused)",
    )
    csv.add_argument(
        "--train-start", help="first date of the training split (default: the first row)"
    )
    csv.add_argument("--train-end", help="last date of the training split (default: 70%% of rows)")
    csv.add_argument("--valid-end", help="last date of the validation split (default: next 20%%)")
    csv.add_argument("--fill-gaps", choices=("error", "interpolate"), default="error")
    csv.add_argument(
        "--season",
        type=positive,
        help="the season of the seasonal naive baseline, MASE, AutoETS and the calibration blocks "
        "(default from the frequency: 24 hourly, 7 daily, 52 weekly, 12 monthly, 4 quarterly)",
    )
    csv.add_argument(
        "--known-ahead",
        nargs="*",
        default=[],
        help="categorical columns known one step ahead (e.g. day_type), fed one-hot for t+1",
    )
    csv.add_argument(
        "--scaling",
        choices=("standard", "window"),
        default="standard",
        help="standard: z-score fitted on train; window: each window divided by its own level "
        "inside the graph (for series that drift in level; seq2vec)",
    )
    csv.add_argument(
        "--profile-weeks",
        type=positive,
        default=1,
        help="with --scaling window: >1 forecasts relative to the median of the last N seasons "
        "(robust to a holiday in the last one) and feeds the deseasonalised residuals",
    )
    csv.add_argument(
        "--skip-steps",
        type=int,
        default=-1,
        help="a linear path from the last N normalised rows beside the network: with instance "
        "normalisation (seq2vec) it adds to the forecast (default: the whole window), with "
        "--scaling window (recurrent models) it corrects the base (default: none); 0 disables",
    )
    csv.add_argument(
        "--valid-context",
        choices=("previous", "inside"),
        default="previous",
        help="previous: validation windows take context from before the period (targets cover "
        "it all); inside: windows lie wholly in it, as in the book",
    )
    csv.add_argument("--test-end", help="last date of the test split, used to calibrate intervals")
    csv.add_argument(
        "--calibration",
        choices=("conformal", "spread_factor"),
        default="conformal",
        help="interval calibration fitted on one part of the test split, checked on the other",
    )
    csv.add_argument(
        "--calibration-split",
        choices=("interleaved", "halves"),
        default="interleaved",
        help="interleaved: alternate weeks of test windows fit and check; halves: the first half "
        "fits, the second checks",
    )
    csv.add_argument(
        "--drift-eval", help="START:END, an extra evaluation period (e.g. a new level)"
    )
    csv.add_argument(
        "--date-format",
        help="strftime layout of the dates, e.g. %%d/%%m/%%Y (default: ISO 8601; another layout is "
        "read only when it fits every row one way)",
    )
    csv.add_argument(
        "--dayfirst", action="store_true", help="dates like 01/02/1981 are day first (1 Feb)"
    )
    csv.add_argument(
        "--date-columns",
        nargs="+",
        default=[],
        metavar="COL",
        help="the date spread over columns read as year, month, day, hour, minute, second in "
        "that order (any leading subset), e.g. year month day hour",
    )
    csv.add_argument(
        "--date-unit",
        choices=("s", "ms"),
        help="the date column holds Unix epoch seconds or milliseconds (read as UTC)",
    )
    csv.add_argument(
        "--categorical",
        nargs="*",
        default=[],
        metavar="COL",
        help="categorical covariates, fed one-hot as COL=value columns after the numeric ones",
    )
    csv.add_argument(
        "--format",
        dest="data_format",
        choices=("auto", "wide", "long", "m4"),
        default="auto",
        help="wide: one series (a date column, value columns); long: many series as rows of id, "
        "date, value (Nixtla's unique_id, ds, y); m4: M4's id then values per row; auto: long "
        "when the file has the --id-column, m4 when its first column is V1 and it has no date "
        "column, else wide",
    )
    csv.add_argument(
        "--id-column", default="unique_id", help="the series id column of --format long"
    )
    csv.add_argument(
        "--test-data",
        help="a panel's test continuation: for m4 the matching *-test.csv (same ids, same order), "
        "for long a file of the rows right after each series' history",
    )
    csv.add_argument(
        "--max-windows-per-series",
        type=positive,
        default=200,
        help="a panel's training windows per series, the most recent (so long series don't "
        "dominate)",
    )
    out = train.add_argument_group("output")
    out.add_argument(
        "--out", type=Path, help="repository folder to export to (default models/NAME)"
    )
    out.add_argument("--no-export", action="store_true", help="train and save the checkpoint only")
    out.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="checkpoints (git-ignored)"
    )
    export = sub.add_parser("export", help="export a saved run (runs/NAME) to the repository")
    export.add_argument("--run", type=Path, required=True, help="a folder written by `train`")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument(
        "--allow-worse-than-baseline",
        action="store_true",
        help="export even when the model loses to the best baseline over the horizon",
    )
    export.add_argument(
        "--input-length",
        type=positive,
        help="serve (and evaluate on windows of) this many steps instead of the trained window; "
        "for models that read only the window's last rows (--scaling window --profile-weeks N "
        "reads N seasons), so a longer window forecasts the same",
    )
    optimize = sub.add_parser(
        "optimize",
        help="apply the exporter's current graph rewrites to exported models, checked against "
        "the graphs they replace",
    )
    optimize.add_argument("folders", type=Path, nargs="+", metavar="FOLDER", help="models/NAME")
    backtest = sub.add_parser(
        "backtest",
        help="backtest an exported model through the service: rolling origins over one series "
        "(--start, --end) against naive, seasonal naive and AutoETS; or each series of a panel "
        "forecast once and scored on its continuation (--test-data) as M4 scores, against Naive2, "
        "naive, seasonal naive, SES, Theta and AutoETS",
    )
    backtest.add_argument("--model", type=Path, required=True, help="models/NAME")
    backtest.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a CSV file: one series, or with --test-data a panel's histories",
    )
    backtest.add_argument("--date-column", default="date")
    backtest.add_argument("--target", help="the CSV column of the target (default: the model's)")
    backtest.add_argument(
        "--frequency",
        help="pandas frequency (default: the model's, or inferred); --format m4: the series' "
        "frequency (default: from M4's ids, W1, M1...)",
    )
    backtest.add_argument("--date-format", help="strptime layout of the dates, e.g. %%m/%%d/%%Y")
    backtest.add_argument("--dayfirst", action="store_true", help="read 01/02/2020 as 1 February")
    backtest.add_argument("--fill-gaps", choices=("error", "interpolate"), default="error")
    backtest.add_argument("--start", help="first date a forecast may start (one series: required)")
    backtest.add_argument("--end", help="last date a forecast may start (one series: required)")
    backtest.add_argument(
        "--stride", type=positive, help="steps between origins (default: the model horizon)"
    )
    backtest.add_argument(
        "--season",
        type=positive,
        help="one series: season of the baselines and of MASE (default from the frequency: 24 "
        "hourly, 7 daily, 52 weekly, 12 monthly, 4 quarterly, else 1); --test-data: M4's "
        "seasonality m of MASE, Naive2, SES, Theta and AutoETS (default as M4: 24 hourly, 12 "
        "monthly, 4 quarterly, 1 weekly, daily and yearly)",
    )
    backtest.add_argument(
        "--levels", type=int, nargs="+", default=[80, 95], help="central interval levels, in %%"
    )
    backtest.add_argument(
        "--samples", type=int, default=100, help="MC-dropout paths per forecast (0: no intervals)"
    )
    backtest.add_argument(
        "--seed", type=int, default=0, help="MC-dropout seed of the first request"
    )
    backtest.add_argument("--url", help="a running service (default: start one on 127.0.0.1)")
    backtest.add_argument("--api-key", help="with --url: the service's API key")
    backtest.add_argument("--out", type=Path, help="write the report here (markdown)")
    panel = backtest.add_argument_group("panel (M4-style evaluation of a global model)")
    panel.add_argument(
        "--test-data",
        type=Path,
        help="each series' continuation (M4's *-test.csv, or long rows right after each history): "
        "every series is forecast once, from its raw last input_length points, over the model's "
        "horizon, which must equal the test horizon; series with fewer than the model's "
        "min_length points get the naive forecast (counted in a note)",
    )
    panel.add_argument(
        "--format",
        dest="data_format",
        choices=("auto", "wide", "long", "m4"),
        default="auto",
        help="as train's: m4 (id, then values per row), long (unique_id, ds, y rows) or wide (one "
        "series); auto: long when the file has the --id-column, m4 when it starts with V1",
    )
    panel.add_argument(
        "--id-column", default="unique_id", help="the series id column of --format long"
    )
    panel.add_argument(
        "--no-ets", action="store_true", help="skip AutoETS, the slowest baseline per series"
    )
    panel.add_argument("--no-theta", action="store_true", help="skip Theta")
    panel.add_argument(
        "--jobs",
        type=positive,
        default=2,
        help="processes fitting Theta and AutoETS on the series (default 2)",
    )
    return root


def run_backtest(args: argparse.Namespace) -> int:
    from training.backtest import BacktestConfig, run, run_panel

    if args.test_data is None:
        if args.data_format in ("long", "m4"):
            raise TrainingError(
                f"--format {args.data_format} is a panel: give --test-data FILE, each series' "
                "continuation"
            )
        missing = [flag for flag in ("--start", "--end") if getattr(args, flag[2:]) is None]
        if missing:
            raise TrainingError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required for a "
                "one-series CSV (a panel: --test-data FILE)"
            )
    config = BacktestConfig(
        model=args.model,
        data=args.data,
        date_column=args.date_column,
        target=args.target,
        frequency=args.frequency,
        date_format=args.date_format,
        dayfirst=args.dayfirst,
        fill_gaps=args.fill_gaps,
        start=args.start,
        end=args.end,
        stride=args.stride,
        season=args.season,
        levels=tuple(args.levels),
        samples=args.samples,
        seed=args.seed,
        url=args.url,
        api_key=args.api_key,
        out=args.out,
        test_data=args.test_data,
        data_format=args.data_format,
        id_column=args.id_column,
        ets=not args.no_ets,
        theta=not args.no_theta,
        jobs=args.jobs,
    )
    if args.test_data is not None:
        run_panel(config, log=lambda line: print(line, flush=True))
    else:
        run(config, log=lambda line: print(line, flush=True))
    return 0


def run_optimize(args: argparse.Namespace) -> int:
    from training.rewrites import reoptimize

    for folder in args.folders:
        print(f"optimize: {reoptimize(folder)}", flush=True)
    return 0


def units(value: float) -> str:
    """A number in the data's units with 3 significant digits (riders: 19,741; degrees: 3.13)."""
    import math

    value = float(value)
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    decimals = max(0, min(6, 2 - math.floor(math.log10(abs(value)))))
    return f"{value:,.{decimals}f}"


def metrics_table(spec: dict[str, Any]) -> str:
    """Validation MSE per horizon step: model (dropout off, MC mean) against the baselines."""
    metrics = spec["metrics"]
    rows = [k for k in ("model", "model_mc_mean", "linear", "naive") if k in metrics]
    rows += [k for k in metrics if k.startswith("naive_")]
    horizon = len(metrics["model"]["mse_per_step"])
    head = f"{'validation MSE':<16}" + "".join(f"{'t+' + str(h + 1):>9}" for h in range(horizon))
    lines = [head + f"{'MAE':>9}"]
    for key in rows:
        per_step = metrics[key]["mse_per_step"]
        lines.append(
            f"{key:<16}" + "".join(f"{v:9.5f}" for v in per_step) + f"{metrics[key]['mae']:9.5f}"
        )
    return "\n".join(lines)


def build_model(
    args: argparse.Namespace, task: Task, seed: int, normalization: str = "global"
) -> Any:
    """A fresh, untrained model of the architecture and sizes `args` name, initialised from `seed`,
    with in-graph instance normalisation when `normalization` is "instance"."""
    from training.architectures import ARCHITECTURES
    from training.fit import set_seed

    set_seed(seed)
    size_arg = "filters" if args.model == "wavenet" else "units"
    window_norm = task.numeric_features if args.scaling == "window" else 0
    instance_norm = task.numeric_features if normalization == "instance" else 0
    skip = skip_steps(args, normalization)
    return ARCHITECTURES[args.model](
        task.n_features,
        args.horizon,
        args.kind,
        **{
            size_arg: args.units,
            "dropout": args.dropout,
            "window_norm": window_norm,
            "instance_norm": instance_norm,
            "season": task.config.season,
            **({"weeks": args.profile_weeks} if args.profile_weeks > 1 else {}),
            **({"skip": skip} if skip > 0 else {}),
        },
    )


def skip_steps(args: argparse.Namespace, normalization: str) -> int:
    """The linear path's rows: as given, or by default the whole window for an instance-normalised
    seq2vec model (so it is never less expressive than the linear baseline the gate compares it
    with) and none otherwise."""
    if args.skip_steps >= 0:
        return int(args.skip_steps)
    return int(args.input_length) if normalization == "instance" and args.kind == "seq2vec" else 0


def normalization_candidates(args: argparse.Namespace, task: Task) -> list[str]:
    """The normalisations to train: both for `auto` (the better on validation is kept), never
    instance normalisation on top of `--scaling window` (its own per-window level)."""
    if args.scaling == "window":
        if args.normalization == "instance":
            raise TrainingError("--normalization instance and --scaling window are alternatives")
        return ["global"]
    if task.panel_ids is not None:
        # Each series was divided by its own scale for training, but the service sends raw
        # values: only a model that normalises each window itself serves them right.
        if args.normalization == "global":
            raise TrainingError(
                "--normalization global cannot serve many series of different scales: the model "
                "must normalise each window (instance, the default for --format long and m4)"
            )
        return ["instance"]
    if args.normalization == "auto":
        return ["instance", "global"]
    return [str(args.normalization)]


def validation_mae(model: Any, task: Task) -> float:
    """Validation MAE over every step of the horizon (dropout off), in the model's units."""
    import numpy as np

    from training.evaluation import last_step
    from training.fit import predict

    return float(np.mean(np.abs(last_step(predict(model, task.valid.x)) - last_step(task.valid.y))))


def next_step_error(model: Any, task: Task) -> str:
    """Validation MAE of the first forecast step (dropout off), in data units when scaled."""
    import numpy as np

    from training.evaluation import last_step
    from training.fit import predict

    error = np.abs(last_step(predict(model, task.valid.x)) - last_step(task.valid.y))[:, 0]
    if task.scaling.method == "none":
        return f"validation next-step MAE {float(error.mean()):.5f}"
    return f"validation next-step MAE {units(float(error.mean()) * task.scaling.scale[0])}"


def screening_table(model: Any, task: Task) -> str:
    """Keras-side MAE per step (dropout off) on validation, and on --drift-eval, against the seasonal
    naive forecast, in data units when scaled: a quick look when the export is skipped."""
    import numpy as np

    from training.evaluation import errors, last_step, naive_forecast
    from training.fit import predict

    unit = task.scaling.scale[0] if task.scaling.method != "none" else 1.0
    lines = []
    for label, windows in (("validation", task.valid), ("drift", task.drift)):
        if windows is None:
            continue
        truth = last_step(windows.y)
        forecasts = last_step(predict(model, windows.x))
        naive = naive_forecast(windows, season=task.config.season)
        model_mae = np.asarray(errors(forecasts, truth)["mae_per_step"]) * unit
        naive_mae = np.asarray(errors(naive, truth)["mae_per_step"]) * unit
        wins = int((model_mae < naive_mae).sum())
        lines.append(
            f"screen {label}: next-step MAE {units(model_mae[0])} (naive_{task.config.season} "
            f"{units(naive_mae[0])}); mean over steps {units(model_mae.mean())} "
            f"({units(naive_mae.mean())}); steps beating naive {wins}/{len(model_mae)}"
        )
        lines.append(f"screen {label} per step: " + " ".join(units(v) for v in model_mae))
    return "\n".join(lines)


def run_train(args: argparse.Namespace) -> int:
    config = TaskConfig(
        data=args.data,
        input_length=args.input_length,
        horizon=args.horizon,
        kind=args.kind,
        seed=args.seed,
        date_column=args.date_column,
        target=args.target,
        covariates=list(args.covariates),
        frequency=args.frequency,
        train_start=args.train_start,
        train_end=args.train_end,
        valid_end=args.valid_end,
        fill_gaps=args.fill_gaps,
        season=args.season or 0,
        synthetic_sizes=tuple(args.synthetic_sizes),
        known_ahead=list(args.known_ahead),
        scaling=args.scaling,
        test_end=args.test_end,
        drift_eval=args.drift_eval,
        valid_context=args.valid_context,
        calibration=args.calibration,
        calibration_split=args.calibration_split,
        date_format=args.date_format,
        dayfirst=args.dayfirst,
        date_columns=list(args.date_columns),
        date_unit=args.date_unit,
        categorical=list(args.categorical),
        data_format=args.data_format,
        id_column=args.id_column,
        test_data=args.test_data,
        max_windows_per_series=args.max_windows_per_series,
    )
    if not 0 <= args.dropout < 1:
        raise TrainingError(f"--dropout must be in [0, 1), got {args.dropout}")
    task = build_task(config)
    name = args.name or args.model
    print(
        f"data: {task.description}; {len(task.train)} training and {len(task.valid)} validation "
        f"windows, features {task.features}",
        flush=True,
    )
    for note in task.notes:
        print(f"data: {note}", flush=True)

    from training.architectures import build_ensemble
    from training.fit import train

    seeds = [args.seed + i for i in range(args.ensemble)]
    candidates = normalization_candidates(args, task)
    chosen = candidates[0]
    members = []
    infos = []
    for i, seed in enumerate(seeds):
        if len(seeds) > 1:
            print(f"ensemble: member {i + 1}/{len(seeds)}, seed {seed}", flush=True)
        tried: dict[str, tuple[Any, dict[str, Any], float]] = {}
        for normalization in candidates if i == 0 else [chosen]:
            member = build_model(args, task, seed, normalization)
            if i == 0:
                print(
                    f"train: {args.model} ({member.count_params():,} parameters"
                    + (f" per member, {len(seeds)} members" if len(seeds) > 1 else "")
                    + f"), up to {args.epochs} epochs, {normalization} normalisation",
                    flush=True,
                )
            info = train(
                member,
                task.train,
                task.valid,
                args.epochs,
                args.batch_size,
                args.patience,
                args.learning_rate,
                args.loss,
                args.huber_delta,
            )
            tried[normalization] = (member, info, validation_mae(member, task))
        if i == 0:
            chosen = min(tried, key=lambda n: tried[n][2])
            if len(tried) > 1:
                print(
                    "train: validation MAE over the horizon "
                    + ", ".join(f"{n} normalisation {tried[n][2]:.4g}" for n in tried)
                    + f": keeping {chosen}",
                    flush=True,
                )
        member, info, _ = tried[chosen]
        info = {
            **info,
            "normalization": chosen,
            "normalization_validation_mae": {n: round(v[2], 6) for n, v in tried.items()},
        }
        members.append(member)
        infos.append(info)
        if len(seeds) > 1:
            print(
                f"ensemble: member {i + 1}/{len(seeds)} done in {info['seconds']}s, best epoch "
                f"{info['best_epoch']}; {next_step_error(member, task)}",
                flush=True,
            )
    model = build_ensemble(members)
    info = dict(infos[0])
    if len(seeds) > 1:
        info["seconds"] = round(sum(i["seconds"] for i in infos), 1)
        info["ensemble"] = {
            "members": len(seeds),
            "seeds": seeds,
            "epochs_run": [i["epochs_run"] for i in infos],
            "best_epoch": [i["best_epoch"] for i in infos],
        }
        print(f"ensemble: mean of {len(seeds)} members; {next_step_error(model, task)}", flush=True)
    info.update(model=args.model, units=args.units, dropout=args.dropout, seed=args.seed)
    if args.profile_weeks > 1:
        info["profile_weeks"] = args.profile_weeks
    if skip_steps(args, chosen) > 0:
        info["skip_steps"] = skip_steps(args, chosen)
    run_dir = args.runs_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    (run_dir / "run.json").write_text(
        json.dumps(
            {"name": name, "architecture": args.model, "task": config.to_json(), "training": info},
            indent=2,
        )
        + "\n"
    )
    best = info["ensemble"]["best_epoch"] if len(seeds) > 1 else info["best_epoch"]
    print(f"train: done in {info['seconds']}s, best epoch {best}; saved {run_dir}", flush=True)
    if args.no_export:
        print(screening_table(model, task), flush=True)
        return 0
    out = args.out or Path("models") / name
    return export_and_report(
        model, task, out, name, args.model, info, args.allow_worse_than_baseline
    )


def export_and_report(
    model: Any,
    task: Task,
    out: Path,
    name: str,
    architecture: str,
    info: dict[str, Any],
    allow_worse: bool = False,
) -> int:
    from training.export import export

    spec = export(model, task, out, name, architecture, info, allow_worse=allow_worse)
    print(metrics_table(spec))
    m = spec["metrics"]
    # The book's metric: MSE of the H-step forecast made at the last time step, over all H steps.
    line = f"{name}: validation MSE {m['model']['mse']:.5f} (dropout off)"
    if "model_mc_mean" in m:
        line += f", {m['model_mc_mean']['mse']:.5f} (MC mean)"
    line += f"; linear {m['linear']['mse']:.5f}, naive {m['naive']['mse']:.5f}"
    print(line + f"; min_length {spec['min_length']}")
    if "mae_original_units" in m["model"]:
        parts = [
            f"{k} {units(v['mae_original_units'])}"
            for k, v in m.items()
            if isinstance(v, dict) and "mae_original_units" in v
        ]
        print(f"{name}: validation MAE in data units: " + ", ".join(parts))
        print(f"{name}: next-step MAE {units(m['model']['mae_original_units_per_step'][0])}")
    if "drift" in m:
        drift = m["drift"]
        parts = [
            f"{k} {units(v['mae_original_units'] if 'mae_original_units' in v else v['mae'])}"
            for k, v in drift.items()
            if isinstance(v, dict)
        ]
        print(f"{name}: MAE over {drift['period']}: " + ", ".join(parts))
    if spec.get("calibration"):
        cal = spec["calibration"]
        for label in ("raw", "calibrated"):
            mean = {
                level: round(sum(values) / len(values), 3)
                for level, values in cal[f"coverage_{label}"].items()
            }
            print(f"{name}: held-out interval coverage {label} (mean over steps) {mean}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    run_file = args.run / "run.json"
    if not run_file.is_file():
        raise TrainingError(f"{run_file} not found: pass a folder written by `train`")
    run = json.loads(run_file.read_text())
    config = TaskConfig(**run["task"])
    info = dict(run["training"])
    if args.input_length is not None and args.input_length != config.input_length:
        weeks = info.get("profile_weeks", 1) if config.scaling == "window" else 1
        reads = config.season * weeks
        if weeks < 2:
            raise TrainingError(
                "--input-length can change the window only of models that read its last rows "
                "alone (--scaling window with --profile-weeks > 1)"
            )
        if args.input_length < reads:
            raise TrainingError(
                f"--input-length {args.input_length} is shorter than the {reads} steps the model "
                "reads"
            )
        info["trained_input_length"] = config.input_length
        config.input_length = args.input_length
    task = build_task(config)
    import keras

    import training.architectures
    import training.fit  # noqa: F401

    model = keras.models.load_model(args.run / "model.keras")
    return export_and_report(
        model,
        task,
        args.out,
        run["name"],
        run["architecture"],
        info,
        args.allow_worse_than_baseline,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        commands = {"train": run_train, "export": run_export, "optimize": run_optimize}
        commands["backtest"] = run_backtest
        return commands[args.command](args)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
