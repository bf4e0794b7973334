"""Turning a model's free text into an env action: tag parsing, format validity, the invalid-format penalty.

The model answers ``<think>...</think><action>...</action>`` (envs with admissible actions) or, in free-form envs
such as Deep Search whose ``admissible_actions`` is empty, ``<think>...</think>`` followed by
``<search> query </search>`` or ``<answer> text </answer>``. Conventions follow verl-agent's projection functions:
the action is the text between the first ``<action>`` and the first ``</action>`` after it, stripped and lower-cased;
a response is well-formed only if it has that action block, exactly one ``<think>...</think>`` pair before it, and
no CJK characters (a symptom of Qwen drifting into Chinese); a malformed response still reaches the env (which will
mostly answer that nothing happens), and the step is charged ``invalid_format_penalty``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym

from empg_gym.errors import ConfigError

_ACTION_RE = re.compile(r"<action>(.*?)</action>", re.IGNORECASE | re.DOTALL)
_TOOL_RE = re.compile(r"<(search|answer)>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")


@dataclass(frozen=True)
class ParsedResponse:
    """What :func:`parse_response` found in a model response.

    Attributes:
        action: The string to send to the env (the tagged action, or the whole stripped response if untagged).
        format_valid: Whether the response follows the answer format exactly.
        tag: ``"action"``, ``"search"`` or ``"answer"`` for the block found; ``None`` when there is none.
    """

    action: str
    format_valid: bool
    tag: str | None


def parse_response(text: str, *, free_form: bool = False, require_think: bool = True) -> ParsedResponse:
    """Extract the env action from a model response and judge its format.

    Args:
        text: The model's response.
        free_form: The env has no admissible list: accept ``<search>``/``<answer>`` blocks (passed through with
            their tags, cut after the first closing tag) as well as ``<action>``.
        require_think: A well-formed response needs exactly one ``<think>...</think>`` before its action block.

    Example:
        >>> parse_response("<think>The key is here.</think><action>Take key</action>")
        ParsedResponse(action='take key', format_valid=True, tag='action')
        >>> parse_response("go east").format_valid
        False
        >>> parse_response("<think>I know it.</think> <answer> Paris </answer> more", free_form=True)
        ParsedResponse(action='<answer>Paris</answer>', format_valid=True, tag='answer')
    """
    if not isinstance(text, str):
        raise ConfigError(f"A model response must be a string, got {type(text).__name__}: {text!r:.80}.")
    match, tag = _ACTION_RE.search(text), "action"
    if free_form:
        tool = _TOOL_RE.search(text)
        if tool is not None and (match is None or tool.start() < match.start()):
            match, tag = tool, tool.group(1).lower()
    if match is None:
        return ParsedResponse(
            action=text.strip().lower() if not free_form else text.strip(), format_valid=False, tag=None
        )
    content = match.group(match.lastindex or 1).strip()
    if tag == "action":
        action = content.lower()
    else:
        action = f"<{tag}>{content}</{tag}>"
    valid = bool(content) and not _CJK_RE.search(text)
    if require_think:
        valid = valid and _think_ok(text, match.start())
    return ParsedResponse(action=action, format_valid=valid, tag=tag)


def _think_ok(text: str, action_start: int) -> bool:
    lower = text.lower()
    opens, closes = lower.count("<think>"), lower.count("</think>")
    start, end = lower.find("<think>"), lower.find("</think>")
    return opens == 1 and closes == 1 and start < end < action_start


class ActionParsingWrapper(gym.Wrapper[Any, str, Any, str]):
    """Let the agent act with free text: parse the action out of it, report ``info["format_valid"]``, penalise.

    ``step`` takes the model's whole response. The extracted action goes to the env; a malformed response still
    goes (as its stripped text) and costs ``invalid_format_penalty`` subtracted from the step reward. Added info
    keys: ``format_valid`` (bool), ``parsed_action`` (what the env received) and ``format_penalty`` (float).
    Whether the env understood the action stays in ``info["action_valid"]``.

    Args:
        env: An empg-gym text env (its info carries ``admissible_actions``; empty means free-form).
        invalid_format_penalty: Subtracted from the reward of a malformed step (verl-agent uses 0.1); ``>= 0``.
        require_think: Whether a well-formed response needs a ``<think>...</think>`` block.

    Example:
        >>> import gymnasium as gym
        >>> import empg_gym
        >>> env = ActionParsingWrapper(gym.make("EMPG-KeyDoor-v0"), invalid_format_penalty=0.1)
        >>> obs, info = env.reset(options={"task_id": "keydoor-3r-s1-k3"})
        >>> _, reward, _, _, info = env.step("<think>Walk towards the door.</think><action>go east</action>")
        >>> info["parsed_action"], info["format_valid"], info["action_valid"], reward
        ('go east', True, True, 0.0)
        >>> _, reward, _, _, info = env.step("I will go west")
        >>> info["format_valid"], info["action_valid"], reward
        (False, False, -0.1)
    """

    def __init__(
        self, env: gym.Env[Any, Any], *, invalid_format_penalty: float = 0.1, require_think: bool = True
    ):
        super().__init__(env)
        if not invalid_format_penalty >= 0:
            raise ConfigError(
                f"invalid_format_penalty={invalid_format_penalty} must be >= 0 (it is subtracted from the reward)."
            )
        self.invalid_format_penalty = float(invalid_format_penalty)
        self.require_think = bool(require_think)
        self._free_form = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the env and note whether the new state is free-form (no admissible actions)."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._free_form = not info.get("admissible_actions")
        return obs, info

    def step(self, action: str) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Parse ``action`` (the model's response), step the env with the result, and apply the penalty."""
        if isinstance(action, str):
            parsed = parse_response(action, free_form=self._free_form, require_think=self.require_think)
        else:  # the env answers a non-string (bytes included) with invalid-action feedback
            parsed = ParsedResponse(action=action, format_valid=False, tag=None)
        obs, reward, terminated, truncated, info = self.env.step(parsed.action)
        self._free_form = not info.get("admissible_actions")
        penalty = 0.0 if parsed.format_valid else self.invalid_format_penalty
        info = {
            **info,
            "format_valid": parsed.format_valid,
            "parsed_action": parsed.action,
            "format_penalty": penalty,
        }
        return obs, float(reward) - penalty, terminated, truncated, info
