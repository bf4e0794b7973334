"""The step prompt: task, steps taken, the recent history, the current observation and the admissible actions.

verl-agent prompts every step afresh instead of concatenating the whole episode: the prompt names the task, says
how many steps were taken, shows the last ``N`` (default 2) observation/action pairs, the current observation, the
admissible actions, and asks for ``<think>...</think><action>...</action>``. Free-form envs (no admissible
actions, e.g. Deep Search) get the Search-R1 answer format instead: ``<search> query </search>`` or
``<answer> text </answer>``. :class:`PromptWrapper` turns an env's observation into that prompt;
:func:`make_agent_env` stacks it on :class:`~empg_gym.wrappers.actions.ActionParsingWrapper`, which is what an
LLM agent talks to.
"""

from __future__ import annotations

import dataclasses
import string
from collections import deque
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym

from empg_gym.core import MAX_OBSERVATION_CHARS, TextSpace
from empg_gym.errors import ConfigError
from empg_gym.wrappers.actions import ActionParsingWrapper

#: Longest prompt the wrapper emits (the space's ``max_length``); longer prompts are cut in the middle.
MAX_PROMPT_CHARS = 4 * MAX_OBSERVATION_CHARS

#: How the prompt introduces the agent's surroundings, per env family.
FAMILY_DESCRIPTIONS = {
    "alfworld": "the ALFRED embodied household environment",
    "webshop": "the WebShop e-commerce environment",
    "toy": "a small text adventure",
}

ACTION_TEMPLATE = """You are an expert agent acting in {env_description}. Your task is to: {task}
{history_block}Your current observation is: {observation}
Your admissible actions in the current situation are: [
{admissible_actions}
].

Now it is your turn to take one action for the current step.
First reason step by step about the current situation; this reasoning MUST be enclosed within <think> </think> tags.
Then choose one admissible action for the current step and present it within <action> </action> tags."""

SEARCH_TEMPLATE = """You are an expert agent answering the question below step by step, using a search engine when you \
need facts. Your question: {task}
{history_block}Your current observation is: {observation}

Now it is your turn to respond for the current step.
First reason about what you know and what is missing; this reasoning MUST be enclosed within <think> </think> tags.
Then do exactly one of the following:
(1) if some knowledge is missing or uncertain, search for it with <search> your query </search>;
(2) if you can answer with confidence, give the final answer within <answer> </answer> tags, as a short phrase \
without explanation."""

#: The same prompts for agents that answer without a ``<think>`` block (``require_think=False``).
ACTION_TEMPLATE_NO_THINK = ACTION_TEMPLATE.replace(
    "First reason step by step about the current situation; this reasoning MUST be enclosed within <think> </think> "
    "tags.\nThen choose", "Choose")
SEARCH_TEMPLATE_NO_THINK = SEARCH_TEMPLATE.replace(
    "First reason about what you know and what is missing; this reasoning MUST be enclosed within <think> </think> "
    "tags.\nThen do", "Do")

HISTORY_TEMPLATE = (
    "Prior to this step, you have already taken {step_count} step(s). Below are the most recent {history_length} "
    "observations and the actions you took after each: {history}\nYou are now at step {current_step}. "
)

_FIELDS = {"env_description", "task", "history_block", "observation", "admissible_actions"}


@dataclass(frozen=True)
class PromptConfig:
    """How :class:`PromptWrapper` builds the step prompt.

    Attributes:
        history_length: Number ``N`` of past observation/action pairs shown (verl-agent: 2); 0 shows none.
        action_template: Prompt for envs with admissible actions; fields ``{env_description}``, ``{task}``,
            ``{history_block}``, ``{observation}``, ``{admissible_actions}``.
        search_template: Prompt for free-form envs (empty admissible list); same fields.
        hidden_actions: Admissible actions left out of the prompt (ALFWorld's ``help``, as verl-agent does).
        env_description: Overrides the per-family description (``None``: from :data:`FAMILY_DESCRIPTIONS`).
    """

    history_length: int = 2
    action_template: str = ACTION_TEMPLATE
    search_template: str = SEARCH_TEMPLATE
    hidden_actions: tuple[str, ...] = ("help",)
    env_description: str | None = None

    def __post_init__(self) -> None:
        if self.history_length < 0:
            raise ConfigError(f"history_length={self.history_length} must be >= 0 (0 shows no history).")
        for name in ("action_template", "search_template"):
            fields = {f for _, f, _, _ in string.Formatter().parse(getattr(self, name)) if f is not None}
            unknown = sorted(fields - _FIELDS)
            if unknown:
                raise ConfigError(
                    f"{name} uses unknown field(s) {unknown}; available fields: {sorted(_FIELDS)}."
                )

    def without_think(self) -> PromptConfig:
        """Return these settings with the default templates swapped for ones that do not ask for ``<think>``.

        Custom templates are kept as they are.

        Example:
            >>> "<think>" in PromptConfig().without_think().action_template
            False
        """
        swap = {ACTION_TEMPLATE: ACTION_TEMPLATE_NO_THINK, SEARCH_TEMPLATE: SEARCH_TEMPLATE_NO_THINK}
        return dataclasses.replace(self, action_template=swap.get(self.action_template, self.action_template),
                                   search_template=swap.get(self.search_template, self.search_template))


class PromptWrapper(gym.Wrapper[str, Any, str, Any]):
    """Replace each observation by the full verl-agent-style step prompt (see the module docstring).

    The env's own observation stays in ``info["raw_observation"]``. The history records the action the env
    received (``info["parsed_action"]`` when an :class:`ActionParsingWrapper` sits below, else the action given).

    Args:
        env: An empg-gym text env (its info carries ``task`` and ``admissible_actions``).
        config: Prompt settings (default :class:`PromptConfig`).

    Example:
        >>> import gymnasium as gym
        >>> import empg_gym
        >>> env = PromptWrapper(gym.make("EMPG-KeyDoor-v0"))
        >>> prompt, info = env.reset(options={"task_id": "keydoor-3r-s1-k3"})
        >>> print(prompt.splitlines()[0])
        You are an expert agent acting in a small text adventure. Your task is to: open the door.
        >>> prompt, *_ = env.step("go east")
        >>> "you have already taken 1 step(s)" in prompt and "Action 1: 'go east'" in prompt
        True
    """

    def __init__(self, env: gym.Env[Any, Any], config: PromptConfig | None = None) -> None:
        super().__init__(env)
        self.config = config or PromptConfig()
        self.observation_space = TextSpace(MAX_PROMPT_CHARS)
        self._history: deque[tuple[str, str]] = deque(maxlen=max(self.config.history_length, 1))
        self._steps = 0
        self._task = ""
        self._last_obs = ""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Reset the env and return the first step prompt."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._history.clear()
        self._steps = 0
        self._task = str(info.get("task", ""))
        self._last_obs = str(obs)
        return self.build_prompt(info), {**info, "raw_observation": self._last_obs}

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and return the next step prompt."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        taken = info.get("parsed_action", action)
        self._history.append((self._last_obs, taken if isinstance(taken, str) else repr(taken)))
        self._steps += 1
        self._last_obs = str(obs)
        return (
            self.build_prompt(info),
            reward,
            terminated,
            truncated,
            {**info, "raw_observation": self._last_obs},
        )

    def build_prompt(self, info: dict[str, Any]) -> str:
        """Return the prompt for the current state (``info`` of the latest reset/step gives the actions)."""
        admissible = [a for a in info.get("admissible_actions") or [] if a not in self.config.hidden_actions]
        template = self.config.action_template if admissible else self.config.search_template
        prompt = template.format(
            env_description=self.config.env_description or self._family_description(),
            task=self._task,
            history_block=self._history_block(),
            observation=self._last_obs,
            admissible_actions="\n".join(f"'{a}'" for a in admissible),
        )
        if len(prompt) > MAX_PROMPT_CHARS:
            half = MAX_PROMPT_CHARS // 2 - 3
            prompt = prompt[:half] + "\n...\n" + prompt[-half:]
        return prompt

    def _history_block(self) -> str:
        n = self.config.history_length
        if self._steps == 0 or n == 0:
            return ""
        recent = list(self._history)[-n:]
        first = self._steps - len(recent) + 1
        pairs = "".join(
            f"\n[Observation {first + k}: '{obs}', Action {first + k}: '{act}']"
            for k, (obs, act) in enumerate(recent)
        )
        return HISTORY_TEMPLATE.format(
            step_count=self._steps, history_length=len(recent), history=pairs, current_step=self._steps + 1
        )

    def _family_description(self) -> str:
        family = getattr(self.env.unwrapped, "family", "")
        return FAMILY_DESCRIPTIONS.get(family, "a text-based environment")


def make_agent_env(
    env: gym.Env[Any, Any] | str,
    *,
    prompt: PromptConfig | None = None,
    invalid_format_penalty: float = 0.1,
    require_think: bool = True,
    **make_kwargs: Any,
) -> PromptWrapper:
    """Return the env an LLM agent talks to: observations are step prompts, actions are raw model responses.

    Args:
        env: An env, or an env id for :func:`gymnasium.make` (``make_kwargs`` go to it).
        prompt: Prompt settings.
        invalid_format_penalty: See :class:`ActionParsingWrapper`.
        require_think: See :class:`ActionParsingWrapper`; when ``False``, the default templates stop asking for
            ``<think>`` (see :meth:`PromptConfig.without_think`).
        **make_kwargs: Keyword arguments for :func:`gymnasium.make` (only with an env id).

    Example:
        >>> import empg_gym
        >>> env = make_agent_env("EMPG-KeyDoor-v0")
        >>> prompt, info = env.reset(options={"task_id": "keydoor-3r-s1-k3"})
        >>> _, _, _, _, info = env.step("<think>Move.</think><action>go east</action>")
        >>> info["format_valid"], info["parsed_action"], info["raw_observation"]
        (True, 'go east', 'You are in room 2 of 3. The room is empty. You carry nothing.')
    """
    if isinstance(env, str):
        env = gym.make(env, **make_kwargs)
    elif make_kwargs:
        raise ConfigError(
            f"make_kwargs {sorted(make_kwargs)} are only used with an env id, not an env instance."
        )
    parsed = ActionParsingWrapper(
        env, invalid_format_penalty=invalid_format_penalty, require_think=require_think
    )
    prompt = prompt or PromptConfig()
    return PromptWrapper(parsed, prompt if require_think else prompt.without_think())
