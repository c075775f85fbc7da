"""Episodes as a library: what the command line, PETS, the learners and sweeps share."""

from recede.experiments.episode import (
    Episode, EpisodeSpec, PlanRecorder, check_options, env_bounds, episode_record, episode_spec,
    json_safe, layer_options, problem_for, run_controller, run_episode, summarize,
)

__all__ = ["Episode", "EpisodeSpec", "PlanRecorder", "check_options", "env_bounds", "episode_record",
           "episode_spec", "json_safe", "layer_options", "problem_for", "run_controller",
           "run_episode", "summarize"]
