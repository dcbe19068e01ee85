"""Session state of the Compare page: the experiment, its widgets, the URL, the job.

Keys live here so pages never spell them. The experiment is *derived* from widget
values on every rerun; widgets are *seeded* from an experiment when the page opens
(from the URL, or the default) and when another page hands one over (a preset's
"Load"). Each session owns its job; finished results are shared through one cache.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer.optimizers.rules import RULES
from explorer.plugins import ENV_VARIABLE
from explorer.plugins import listed as listed_for_owner
from explorer.problems.spec import PROBLEMS, estimate_num_params
from explorer.runs import DEFAULT_EXPERIMENT, Experiment, RuleChoice, RunConfig
from explorer.runs.settings import settings_options
from explorer.server.engine import Engine, EngineUnavailable
from explorer.server.limits import LimitExceeded
from explorer.server.tasks import PluginSources
from explorer.ui.jobs import ComparisonJob
from explorer.ui.plugins import app_plugin_folder
from explorer.ui.urlstate import APP_RUN_OPTIONS, from_query, to_query
from explorer.ui.widgets import non_default, seed, seed_form, widget_value

PROBLEM = "cmp.problem"
RULE_IDS = "cmp.rule_ids"
JOB = "cmp.job"
SEEDED = "cmp.seeded"
PENDING = "cmp.pending_experiment"
EXPERIMENT = "cmp.experiment"  # a non-widget copy: widget state is dropped off-page
WARNINGS = "cmp.url_warnings"
VIEW_LINK = "view.opened_from_link"  # the session started on a view page's link
RUN_PROBLEM = "cmp.run_problem"  # the problem whose defaults the run widgets show
SESSION = "server.session"
_ids = itertools.count()


def default_experiment() -> Experiment:
    """The comparison a first visit runs: a few seconds on 2 CPU cores."""
    return DEFAULT_EXPERIMENT


def run_schema(problem: str) -> tuple:
    """The run settings the app exposes, with ``problem``'s own defaults."""
    return tuple(
        option for option in settings_options(problem) if option.name in APP_RUN_OPTIONS
    )


def problem_prefix(problem: str) -> str:
    return f"cmp.p.{problem}"


def rule_prefix(rule_id: int) -> str:
    return f"cmp.r{rule_id}"


# ------------------------------------------------------------------- seeding
def seed_experiment(experiment: Experiment) -> None:
    """Makes every widget show ``experiment``."""
    st.session_state[EXPERIMENT] = experiment
    st.session_state[PROBLEM] = experiment.problem
    seed_form(
        PROBLEMS[experiment.problem].options,
        problem_prefix(experiment.problem),
        experiment.problem_options,
    )
    ids = []
    for choice in experiment.rules:
        rule_id = next(_ids)
        ids.append(rule_id)
        seed_rule(rule_id, choice)
    st.session_state[RULE_IDS] = ids
    seed_form(run_schema(experiment.problem), "cmp.run", experiment.run_options)
    st.session_state[RUN_PROBLEM] = experiment.problem


def follow_problem(problem: str) -> None:
    """Moves the run widgets to ``problem``'s defaults when the problem changed.

    A setting the person changed from the previous problem's default is kept; the
    others take the new problem's (so digits' 128-example curvature batch does not
    carry over to a problem whose default is the full batch, and the same defaults
    hold whether one arrives by a link, the CLI or the selector).
    """
    previous = st.session_state.get(RUN_PROBLEM)
    if previous == problem:
        return
    if previous is not None:
        old, new = run_schema(previous), run_schema(problem)
        for old_option, option in zip(old, new, strict=True):
            key = f"cmp.run.{option.name}"
            current = st.session_state.get(
                key, widget_value(old_option, old_option.default)
            )
            if current == widget_value(old_option, old_option.default):
                seed(option, key, option.default)
    st.session_state[RUN_PROBLEM] = problem


def seed_rule(rule_id: int, choice: RuleChoice) -> None:
    prefix = rule_prefix(rule_id)
    st.session_state[f"{prefix}.rule"] = choice.rule
    st.session_state[f"{prefix}.label"] = choice.label or ""
    schema = RULES[choice.rule].schema(choice.options)
    seed_form(schema, f"{prefix}.{choice.rule}", choice.options)


def add_rule(rule: str) -> None:
    rule_id = next(_ids)
    seed_rule(rule_id, RuleChoice(rule))
    st.session_state[RULE_IDS] = [*st.session_state[RULE_IDS], rule_id]


def remove_rule(rule_id: int) -> None:
    st.session_state[RULE_IDS] = [i for i in st.session_state[RULE_IDS] if i != rule_id]


def hand_over(experiment: Experiment) -> None:
    """Another page asks the Compare page to show (and run) ``experiment``."""
    st.session_state[PENDING] = experiment


def ensure_seeded(query: dict[str, str]) -> list[str]:
    """Seeds widgets once per session (URL or default) or from a handed-over one.

    Returns:
        Warnings about ignored URL parameters (empty when all were valid).
    """
    pending = st.session_state.pop(PENDING, None)
    if pending is not None:
        seed_experiment(pending)
        st.session_state[SEEDED] = True
        st.session_state.pop(JOB, None)
        return []
    if st.session_state.get(SEEDED):
        if PROBLEM not in st.session_state:  # Streamlit dropped the widgets off-page
            seed_experiment(st.session_state.get(EXPERIMENT, default_experiment()))
        return st.session_state.get(WARNINGS, [])
    experiment, warnings = default_experiment(), []
    if query:
        # another session's uploads are unknown here, as in this session's lists
        owner = st.session_state.get(SESSION)
        experiment, warnings = from_query(query, default_experiment(), owner=owner)
        refusal = size_refusal(experiment)
        if refusal is not None:  # never build a link's oversized model
            warnings = [*warnings, f"ignored the link's problem options: {refusal}"]
            experiment = default_experiment()
    seed_experiment(experiment)
    st.session_state[SEEDED] = True
    st.session_state[WARNINGS] = warnings
    return warnings


# ------------------------------------------------------------------- reading
def read_rule(rule_id: int, values: dict[str, Any], label: str) -> RuleChoice:
    rule = st.session_state[f"{rule_prefix(rule_id)}.rule"]
    schema = RULES[rule].schema(values)
    return RuleChoice(rule, non_default(schema, values), label.strip() or None)


def experiment_from(
    problem: str, problem_values: dict, rules: list[RuleChoice], run_values: dict
) -> Experiment:
    """The experiment the widgets describe (only non-default values kept)."""
    return Experiment(
        problem=problem,
        problem_options=non_default(PROBLEMS[problem].options, problem_values),
        rules=tuple(rules),
        run_options=non_default(run_schema(problem), run_values),
    )


def remember(experiment: Experiment) -> None:
    """Keeps the experiment the widgets describe for the other pages and revisits."""
    st.session_state[EXPERIMENT] = experiment


def write_url(experiment: Experiment) -> None:
    """Puts ``experiment`` in the address bar (a copied link reproduces it)."""
    query = to_query(experiment)
    if dict(st.query_params) != query:
        st.query_params.from_dict(query)


# ------------------------------------------------------------------------ jobs
def _close_engine(value: Engine) -> None:
    value.close()


# on_release: an engine dropped from the cache (tests clear it) stops its cluster
# and dispatcher instead of leaving their threads running old work
@st.cache_resource(
    show_spinner="Starting the compute workers…", on_release=_close_engine
)
def engine() -> Engine:
    """The server's compute engine, shared by all sessions (EXPLORER_DASK_*)."""
    sources = PluginSources(app_plugin_folder(), os.environ.get(ENV_VARIABLE, ""))
    return Engine.from_environment(plugins=sources)


def engine_or_stop() -> Engine:
    """The engine, or a page that says why there is none (and stops).

    Every call renews this session's lease: a page that computes is open.
    """
    try:
        found = engine()
    except (EngineUnavailable, ValueError) as error:
        st.error(f"No compute engine: {error}")
        st.stop()
        raise  # st.stop() raises; this keeps type checkers informed
    found.renew(session_id())
    return found


#: Seconds between a session's heartbeats while it has work queued or running
#: (well within ``Limits.lease_seconds``, 60 s by default).
HEARTBEAT_SECONDS = 10.0


def keep_alive() -> None:
    """While this session has work queued or running, renews its lease from a
    fragment every :data:`HEARTBEAT_SECONDS`, on any page (a page that does not
    poll, such as Theory, keeps a comparison started elsewhere alive); a closed tab
    runs no fragment, so its lease runs out and its work is cancelled.
    """
    if SESSION not in st.session_state:
        return  # this session never computed: nothing to keep
    try:
        found = engine()
    except (EngineUnavailable, ValueError):
        return
    if found.dispatcher.live_groups(session_id()):
        _heartbeat()


@st.fragment(run_every=HEARTBEAT_SECONDS)
def _heartbeat() -> None:
    engine().renew(session_id())


def size_refusal(experiment: Experiment) -> str | None:
    """Why the experiment's problem is too large for this server, from its options
    alone (P by arithmetic, nothing built; EXPLORER_MAX_PARAMS), or None.

    Raises:
        ValueError: an invalid problem option.
    """
    num_params = estimate_num_params(experiment.problem, experiment.problem_options)
    return engine_or_stop().limits.problem_refusal(num_params)


def check_size(experiment: Experiment) -> None:
    """:func:`size_refusal` as an exception, for the pages' settings check.

    Raises:
        LimitExceeded: the problem is above the server's limit on P.
    """
    refusal = size_refusal(experiment)
    if refusal is not None:
        raise LimitExceeded(refusal)


def session_id() -> str:
    """This browser session's identity in the fair queue (served in turn).

    A random id kept in the session's state: Streamlit's own id is not unique
    everywhere (AppTest gives every session the same one).
    """
    return st.session_state.setdefault(SESSION, uuid.uuid4().hex)


def listed(registry: Mapping[str, Any]) -> list[str]:
    """The keys of ``registry`` this session may list and pick: every built-in and
    server plugin, and the plugins this session uploaded, never another's.
    """
    # no id yet: this session uploaded nothing (an upload takes one)
    return listed_for_owner(registry, st.session_state.get(SESSION))


def alive_check(grace: float = 15.0) -> Callable[[], bool] | None:
    """A callable that turns False once this session's tab has been closed for
    ``grace`` seconds (a reconnect within it keeps the work); None outside a
    server (tests).
    """
    context = get_script_run_ctx()
    if not runtime.exists() or context is None:
        return None
    instance, sid = runtime.get_instance(), context.session_id
    gone_since: list[float] = []

    def alive() -> bool:
        if instance.is_active_session(sid):
            gone_since.clear()
            return True
        if not gone_since:
            gone_since.append(time.monotonic())
        return time.monotonic() - gone_since[0] < grace

    return alive


def autostart_refusal(experiment: Experiment) -> str | None:
    """Why the page should wait for Run instead of starting on its own, or None.

    The default comparison always starts; a configuration from a link starts only
    within the server's autostart budget (a 10-million-step link waits for Run).
    """
    if experiment == default_experiment():
        return None
    return engine().limits.needs_confirmation(
        experiment.settings.steps, len(experiment.rules)
    )


def current_job() -> ComparisonJob | None:
    return st.session_state.get(JOB)


def forget_job() -> None:
    """Stops and drops the session's comparison (its problem was switched away)."""
    job = st.session_state.pop(JOB, None)
    if job is not None and not job.done:
        job.cancel()


def start_job(experiment: Experiment, configs: list[RunConfig]) -> ComparisonJob:
    """Queues ``configs`` (``experiment.run_configs()``, validated by the page);
    the session's previous comparison is stopped (one comparison per session).

    Raises:
        LimitExceeded: above one of the server's limits.
    """
    previous = current_job()
    if previous is not None and not previous.done:
        previous.cancel()
    refusal = engine().limits.comparison_refusal(
        len(configs), experiment.settings.steps
    ) or size_refusal(experiment)
    if refusal is not None:
        raise LimitExceeded(refusal)
    job = ComparisonJob(
        configs,
        engine(),
        session=session_id(),
        experiment=experiment,
        alive=alive_check(),
    ).start()
    st.session_state[JOB] = job
    return job


# -------------------------------------------------------------- other pages
def start_for_views(experiment: Experiment) -> ComparisonJob | None:
    """Starts the experiment's comparison for a view page a session started on
    (a shared /landscape or /curvature link), so that it shows the same paths and
    points as the page it was copied from; None otherwise, or when it is above the
    autostart budget or refused (the views then show θ₀ only, until the Compare
    page runs).
    """
    if not st.session_state.get(VIEW_LINK) or autostart_refusal(experiment):
        return None
    try:
        return start_job(experiment, experiment.run_configs())
    except (LimitExceeded, ValueError):
        return None


def compare_context() -> tuple[Experiment, ComparisonJob | None]:
    """The Compare page's experiment and its last job (None once the problem changed).

    The Curvature and Landscape pages look at the same problem and runs, so a user
    moving between pages keeps one experiment in mind.
    """
    ensure_seeded(st.query_params.to_dict() if not st.session_state.get(SEEDED) else {})
    experiment: Experiment = st.session_state[EXPERIMENT]
    job = current_job()
    if job is not None and (
        job.experiment is None or job.experiment.problem != experiment.problem
    ):
        job = None
    return experiment, job
