"""An asynchronous run's report shows each side's time and the staleness histogram; the rollout
process's seconds are not stacked as phases of the trainer's step."""

from rlhf.report.plots import async_plots, phase_plot, staleness_plot


def records(asynchronous: bool) -> list[dict]:
    rows = [{"step": 0}]
    for step in range(1, 5):
        row = {"step": step, "time/step_s": 0.2, "time/update_s": 0.15}
        if asynchronous:
            row.update({"time/trainer_wait_s": 0.01, "time/rollout_wait_s": 0.1, "time/rollout_generate_s": 0.09, "async/staleness_mean": 0.75,
                        "async/staleness_hist/0": 0.25, "async/staleness_hist/1": 0.75, "async/staleness_hist/>1": 0.0})
        else:
            row["time/generate_s"] = 0.05
        rows.append(row)
    return rows


def test_an_async_run_gets_the_overlap_and_staleness_plots_and_a_sync_run_none():
    plots = async_plots(records(asynchronous=True))
    assert [plot.title for plot in plots] == ["Asynchronous overlap", "Staleness of trained samples"]
    assert all(plot.png and plot.png.startswith(b"\x89PNG") for plot in plots)
    assert async_plots(records(asynchronous=False)) == []


def test_the_rollout_processs_seconds_are_not_phases_of_the_step(monkeypatch):
    stacked = []
    import rlhf.report.plots as plots

    real_figure = plots._figure

    def spying_figure(*args, **kwargs):
        figure, axis = real_figure(*args, **kwargs)
        real_stackplot = axis.stackplot
        axis.stackplot = lambda steps, stacks, labels, **kw: stacked.extend(labels) or real_stackplot(steps, stacks, labels=labels, **kw)
        return figure, axis

    monkeypatch.setattr(plots, "_figure", spying_figure)
    assert phase_plot(records(asynchronous=True)).png
    assert sorted(stacked) == ["trainer_wait", "update"]


def test_the_histogram_averages_the_shares_over_steps():
    assert staleness_plot(records(asynchronous=True)).png
