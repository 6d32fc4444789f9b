"""``Agent``: answer questions about one image, spending vision only when it is worth it.

Per question (:meth:`Agent.ask`), read top to bottom:

1. **Text-first pass**: the question alone through the VQA LLM, no image (:mod:`seal.agent.kv`
   keeps its KV cache when ``agent.cache_reuse``).
2. **Decision**: the value-of-vision policy (:class:`seal.policy.policy.ValuePolicy`, learned head
   or baseline, with its fallback) picks NO / COARSE / FULL; ``force_action`` overrides it (and
   says so in the reason).
3. **NO**: answer from the text-only prompt (the cached prompt when it is the same one).
   **COARSE**: answer from the global view at the coarse budget; a learned COARSE decision whose
   answer is unsure (:mod:`seal.policy.escalation`) escalates to FULL, both views booked.
   **FULL**: the global view at the full budget; the model first replies freely. If the reply is the
   "missing objects" refusal, each listed target (put in the order the question names them, the
   VWM order training used; up to ``agent.search_targets_cap``) is searched
   with the V* search (one :class:`search.session.SearchSession` per image, so the localizer's
   feature cache serves every target and question), the visual working memory is filled (failed
   searches marked "not found", crops cut from the full-resolution image) and the model answers
   again with it.
4. Every vision token, LLM call, search call, generated token, stage time and the peak memory go
   into the question's :class:`vwm.ledger.CostLedger`; every step is emitted as an event
   (:mod:`seal.agent.events`).

Cost conventions: the global view is booked once per question whatever the number of LLM calls
that read it, at the size the prompt holds it (exact with the VQA model's processor: the answer
event's ``prompt_image_tokens``, counted in the last prompt's ``input_ids``, equals the global view's
plus the crops' booked tokens, except after a COARSE -> FULL escalation, which books both views);
each VWM crop once; the search books ``patches newly encoded x tokens per patch``
(patches served from the localizer's per-image cache cost nothing again). ``llm_calls`` counts
VQA model invocations (a generate, a text pass, a batched option scoring); ``generated_tokens``
counts the decoded reply re-tokenised, plus ``</s>`` when it stopped before ``max_new_tokens``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from PIL import Image

from seal.agent import events as ev
from seal.core.paths import resolve_dir
from seal.agent.kv import CachedTextPass, cached_text_pass, score_options_from_cache
from seal.agent.result import AgentResult
from seal.agent.views import ImageViews
from seal.core.errors import InputError
from seal.core.tokens import OPTION_LETTERS
from seal.policy.policy import ValuePolicy
from seal.vqa.refusal import REFUSAL_PREFIX, in_question_order, parse_missing_targets
from seal.core.crops import extract_crop
from vwm.layout import VisualWorkingMemory, VWMEntry
from vwm.ledger import CostLedger

if TYPE_CHECKING:
    from search.localizer import Localizer, LocalizerStats
    from search.result import SearchResult
    from search.session import SearchSession
    from seal.agent.config import AskConfig
    from seal.policy.config import PolicyConfig
    from seal.vqa import VQAModel
    from seal.vqa.token_keep import TokenKeep
    from vwm.budget import VisionBudgetConfig

ACTIONS = ("no", "coarse", "full")
__all__ = ["ACTIONS", "Agent", "AgentResult", "load_policy"]


def load_policy(cfg: "PolicyConfig", seed: int = 0) -> ValuePolicy:
    """The policy to decide with: the baseline ``policy.baseline_name`` (``seed``: the run's), else the
    learned head at ``policy.checkpoint`` (a missing directory is an :class:`~seal.core.errors.InputError`)."""
    if cfg.baseline_name is None and cfg.checkpoint is not None:
        cfg = replace(cfg, checkpoint=str(resolve_dir(cfg.checkpoint, "policy.checkpoint")))
    return ValuePolicy.from_config(cfg, seed=seed)


class Agent:
    """The VQA LLM + the value-of-vision policy + the V* search, over one image at a time.

    Args:
        vqa: the VQA LLM.
        policy: the decision maker.
        cfg: the ``seal ask`` config (:class:`seal.agent.config.AskConfig`).
        localizer: the search localizer for ``models.localizer: vsm`` (the oracle is built per image
            from its annotation in :meth:`set_image`).
    """

    def __init__(self, vqa: "VQAModel", policy: ValuePolicy, cfg: "AskConfig",
                 localizer: "Localizer | None" = None) -> None:
        self.vqa, self.policy, self.cfg, self.acfg = vqa, policy, cfg, cfg.agent
        self.localizer = localizer
        self.views: ImageViews | None = None
        self.session: "SearchSession | None" = None
        self._hit_check_models: dict[str | None, tuple] = {}  # hit_check.vqa_path -> (model, asking settings)

    @classmethod
    def from_config(cls, cfg: "AskConfig") -> "Agent":
        """Load the policy (:func:`load_policy`), the VQA LLM (``models.vqa_path``) and the search
        model (``models.vsm_path``, when ``models.localizer: vsm``). Missing paths raise InputError.
        A VQA LLM that checks the search's hits (``hit_check.vqa_path``) is loaded when first needed."""
        from seal.vqa import VQAModel

        mcfg = cfg.models
        policy = load_policy(cfg.policy, cfg.seed)  # a bad policy directory fails before any model loads
        vqa = VQAModel.load(resolve_dir(mcfg.vqa_path, "models.vqa_path"), device=mcfg.device, dtype=mcfg.dtype,
                            vwm_config=cfg.vwm, device_map=mcfg.device_map or None)
        policy.check_model(vqa)
        vqa.keep_tokens(token_keep(cfg.vision_budget, vqa.processor))
        localizer = None
        if mcfg.localizer == "vsm":
            from search.vsm.config import VSMPredictorConfig
            from search.vsm.localizer import load_vsm_localizer

            from seal.models.vlm import torch_dtype

            localizer = load_vsm_localizer(resolve_dir(mcfg.vsm_path, "models.vsm_path"), device=mcfg.device,
                                           dtype=torch_dtype(mcfg.dtype),
                                           cfg=VSMPredictorConfig(token_cut=cfg.search.token_cut))
        return cls(vqa, policy, cfg, localizer)

    def _hit_check_model(self, path: str | None) -> tuple:
        """``(VQA LLM, its asking settings)`` of the hit check: the answering model (``path`` None) or
        the checkpoint at ``hit_check.vqa_path``, loaded once."""
        if path not in self._hit_check_models:
            model = self.vqa
            if path is not None:
                from seal.vqa import VQAModel

                mcfg = self.cfg.models
                model = VQAModel.load(resolve_dir(path, "hit_check.vqa_path"), device=mcfg.device, dtype=mcfg.dtype,
                                      vwm_config=self.cfg.vwm, device_map=mcfg.device_map or None)
                model.keep_tokens(token_keep(self.cfg.vision_budget, model.processor))  # booked pruned too
            self._hit_check_models[path] = (model, model.hit_check_settings())
        return self._hit_check_models[path]

    # ---- the image ------------------------------------------------------------------------------
    def set_image(self, image: "str | Path | Image.Image | Any", annotation: "str | Path | None" = None,
                  path: "str | Path | None" = None) -> None:
        """Bind the image every following :meth:`ask` is about; caches its views and the search session.

        Args:
            image: a path (loaded upright with EXIF orientation, ``image.max_pixels`` guard), an
                RGB PIL image (other modes are converted), or an image stored in a benchmark file:
                an object with ``open_image(max_pixels) -> PIL image`` whose ``str()`` names it.
            annotation: V*Bench per-sample JSON; required by (and only used for) the oracle localizer.
            path: where a PIL ``image`` was loaded from (recorded in traces).
        Raises:
            InputError: unreadable image; oracle localizer without (or with a mismatched) annotation.
        """
        from search.session import SearchSession
        from seal.core.image_io import load_image
        from search.hit_check.build import build_hit_check

        if isinstance(image, Image.Image):
            img = image if image.mode == "RGB" else image.convert("RGB")
            path = None if path is None else str(path)
        elif hasattr(image, "open_image"):  # an image inside a benchmark file (eval.tsv_samples.TsvImage)
            img, path = image.open_image(self.cfg.image.max_pixels), str(image)
        else:
            img, path = load_image(image, self.cfg.image.max_pixels), str(image)
        views = ImageViews(img, self.cfg.vision_budget, self.vqa.processor, path, vwm_config=self.vqa.vwm_config,
                           tokens_read=self.vqa.vision_tokens_read)
        localizer = self._localizer_for(annotation)
        check = build_hit_check(self.cfg.hit_check, localizer, self._hit_check_model, self.cfg.vision_budget)
        self.session = SearchSession(localizer, views.source, self.cfg.search, check, self.cfg.hit_check, self.cfg.seed)
        self.views = views

    def _localizer_for(self, annotation: "str | Path | None") -> "Localizer":
        if self.cfg.models.localizer == "oracle":
            from search.oracle import OracleLocalizer

            if annotation is None:
                raise InputError("the oracle localizer (models.localizer: oracle) needs the image's V*Bench "
                                 "annotation JSON (--annotation)")
            return OracleLocalizer.from_annotation(annotation, self.cfg.oracle, self.cfg.seed)
        if self.localizer is None:
            raise InputError("models.localizer: vsm, but no VSM localizer was loaded (use Agent.from_config)")
        return self.localizer

    # ---- one question ---------------------------------------------------------------------------
    def ask(self, question: str, options: Sequence[str] | None = None, force_action: str | None = None,
            on_event: Callable[[dict], None] | None = None) -> AgentResult:
        """Answer ``question`` about the current image (see the module docstring for the steps).

        Args:
            question: the question text.
            options: multiple-choice options (answer = one of them), or None / [] for free form.
            force_action: ``"no" | "coarse" | "full"`` to override the policy (still run and recorded).
            on_event: called with each event dict as it happens.
        """
        if self.views is None:
            raise RuntimeError("Agent.ask: call set_image() first")
        if not question or not question.strip():
            raise InputError("the question is empty")
        if force_action is not None and force_action not in ACTIONS:
            raise InputError(f"force_action: expected one of {list(ACTIONS)}, found {force_action!r}")
        q = _Question(question.strip(), [str(o) for o in options] if options else None, on_event)

        state = self._text_pass(q)
        decision, action, reason = self._decide(q, state, force_action)
        reuse = {"enabled": self.acfg.cache_reuse, "used": False,
                 "note": "vision actions put the image before the question; nothing of the text pass is reused"}
        free, targets, skipped, results, vwm, escalation = None, [], [], [], None, None
        if action == "no":
            answer, index, scores, reuse = self._answer_without_vision(q, state)
        elif action == "coarse":
            view = self._global_view(q, "coarse")
            answer, index, scores = self._answer(q, view, None)
            escalation = None if force_action is not None else self._escalation(q, answer, scores)
            if escalation is not None:
                action, reason = "full", f"{reason}; {escalation}"
                view = self._global_view(q, "full")
                free, targets, skipped, results, vwm, (answer, index, scores) = self._full(q, view)
        else:
            view = self._global_view(q, "full")
            free, targets, skipped, results, vwm, (answer, index, scores) = self._full(q, view)
        q.emit({"type": "answer", "answer": answer, "answer_index": index,
                "option_scores": None if scores is None else [round(float(s), 6) for s in scores],
                "protocol": self.acfg.answer_protocol if q.options else "free",
                "prompt_image_tokens": self.vqa.last_image_tokens})  # image ids in the last prompt the LLM read
        q.ledger.close()
        q.emit({"type": "cost", **q.ledger.to_json()})
        return AgentResult(
            question=q.question, options=q.options, answer=answer, answer_index=index, action=action,
            decision=decision, reason=reason,
            text_pass={"entropy": state.output.entropy, "margin": state.output.margin},
            targets=targets, search=results, vwm=vwm, ledger=q.ledger, events=q.events,
            option_scores=scores, cache_reuse=reuse, free_answer=free, policy=self.policy.name,
            skipped_targets=skipped, escalation=escalation)

    def _text_pass(self, q: "_Question") -> CachedTextPass:
        tp_options = q.options if self.acfg.text_pass_options else None
        with q.ledger.stage("text_pass"):
            if self.acfg.cache_reuse:
                state = cached_text_pass(self.vqa, q.question, tp_options)
            else:
                state = CachedTextPass(self.vqa.text_pass(q.question, tp_options), q.question,
                                       note="agent.cache_reuse is off")
        q.ledger.llm_calls += 1
        q.emit({"type": "text_pass", "entropy": state.output.entropy, "margin": state.output.margin,
                "cache_kept": state.has_cache})
        return state

    def _decide(self, q: "_Question", state: CachedTextPass, force_action: str | None):
        with q.ledger.stage("policy"):
            decision = self.policy.decide(state.output)
        reason = decision.reason
        action = decision.action.short
        if force_action is not None:
            reason = f"forced {force_action} (policy {self.policy.name} chose {action}: {reason})"
            action = force_action
        q.emit({"type": "decision", "action": action, "chosen_action": decision.chosen_action.short,
                "policy_action": decision.action.short, "probs": decision.to_json()["probs"], "reason": reason,
                "fallback_fired": decision.fallback_fired, "forced": force_action is not None,
                "policy": self.policy.name})
        return decision, action, reason

    def _escalation(self, q: "_Question", answer: str, scores: list[float] | None) -> str | None:
        """The policy's COARSE -> FULL escalation note for this coarse answer, or None (it stands)."""
        rule = self.policy.escalation
        if rule is None:
            return None
        refused = q.options is None and parse_missing_targets(answer) is not None
        note = rule.check(scores, refused)
        if note is not None:
            q.emit({"type": "escalation", "from": "coarse", "to": "full", "answer": answer, "reason": note})
        return note

    def _global_view(self, q: "_Question", level: str) -> Image.Image:
        with q.ledger.stage("global_view"):
            view = self.views.view(level)
            q.ledger.vision_tokens_global += self.views.tokens(level)
        return view

    # ---- answering ------------------------------------------------------------------------------
    def _answer(self, q: "_Question", image: Image.Image | None,
                vwm: VisualWorkingMemory | None) -> tuple[str, int | None, list[float] | None]:
        """``(answer, index, scores)`` from ``image`` (or ``vwm``, or neither: text only)."""
        with q.ledger.stage("answer"):
            q.ledger.llm_calls += 1
            if q.options is None:
                text = self.vqa.answer(image, q.question, vwm, self.acfg.max_new_tokens)
                q.ledger.generated_tokens += self._generated(text)
                return text, None, None
            if self.acfg.answer_protocol == "letter":
                letter, scores = self.vqa.choose_letter(image, q.question, q.options, vwm)
                index = OPTION_LETTERS.index(letter)
            else:
                scores = self.vqa.score_options(image, q.question, q.options, vwm)
                index = max(range(len(scores)), key=scores.__getitem__)
        return q.options[index], index, list(scores)

    def _answer_without_vision(self, q: "_Question", state: CachedTextPass):
        """The NO action: reuse the text pass when it read the same prompt, else recompute."""
        reuse = {"enabled": self.acfg.cache_reuse, "used": False, "note": ""}
        letter_probs = state.output.letter_probs
        if q.options is None:
            reuse["note"] = "free-form generation re-encodes the prompt"
        elif self.acfg.answer_protocol == "letter" and letter_probs is not None:
            index = max(range(len(letter_probs)), key=letter_probs.__getitem__)
            reuse.update(used=True, note="letter probabilities of the text pass (same prompt)")
            return q.options[index], index, list(letter_probs), reuse
        elif self.acfg.answer_protocol == "letter":
            reuse["note"] = "the text pass did not show the options (agent.text_pass_options: false)"
        elif state.prompt_text != q.question:
            reuse["note"] = "the text pass showed the options; likelihood scoring reads the question alone"
        elif not state.has_cache:
            reuse["note"] = state.note
        else:
            with q.ledger.stage("answer"):
                scores = score_options_from_cache(self.vqa, state, q.options)
            q.ledger.llm_calls += 1
            index = max(range(len(scores)), key=scores.__getitem__)
            reuse.update(used=True, note="options scored from the text pass's KV cache")
            return q.options[index], index, scores, reuse
        answer, index, scores = self._answer(q, None, None)
        return answer, index, scores, reuse

    def _full(self, q: "_Question", view: Image.Image):
        """FULL: free reply on the full view; on a refusal search, fill the VWM, answer again."""
        with q.ledger.stage("free_answer"):
            free = self.vqa.answer(view, q.question, None, self.acfg.max_new_tokens)
        q.ledger.llm_calls += 1
        q.ledger.generated_tokens += self._generated(free)
        targets = parse_missing_targets(free)
        if targets is None and self.acfg.list_targets_above is not None:
            free, targets = self._list_anyway(q, view, free)
        if targets is None:
            answer = (free, None, None) if q.options is None else self._answer(q, view, None)
            return free, [], [], [], None, answer
        targets = in_question_order(targets, q.question)  # the VWM's entry order, as in training
        cap = self.acfg.search_targets_cap
        searched, skipped = targets[:cap], targets[cap:]
        q.emit({"type": "refusal", "text": free, "targets": targets, "searched": searched, "skipped": skipped})
        if not searched:  # a refusal listing nothing usable: answer from the view
            answer = (free, None, None) if q.options is None else self._answer(q, view, None)
            return free, targets, skipped, [], None, answer
        results = self._search(q, searched)
        vwm = self._memory(q, view, results)
        return free, targets, skipped, results, vwm, self._answer(q, None, vwm)

    def _list_anyway(self, q: "_Question", view: Image.Image, free: str) -> tuple[str, list[str] | None]:
        """``agent.list_targets_above``: the refusal generated with its prefix forced (always at 0;
        else when it was probable enough); ``(free, None)`` otherwise."""
        threshold = self.acfg.list_targets_above
        with q.ledger.stage("free_answer"):
            p = None
            if threshold:
                p = self.vqa.refusal_probability(view, q.question)
                q.ledger.llm_calls += 1
                if p < threshold:
                    return free, None
            listed = self.vqa.answer(view, q.question, None, self.acfg.max_new_tokens, prefix=REFUSAL_PREFIX)
        q.ledger.llm_calls += 1
        q.ledger.generated_tokens += self._generated(listed)
        q.emit({"type": "listed_anyway", "answer": free, "refusal_probability": None if p is None else round(p, 4)})
        return listed, parse_missing_targets(listed)

    # ---- search and memory ----------------------------------------------------------------------
    def _search(self, q: "_Question", targets: Sequence[str]) -> list["SearchResult"]:
        """Search each target in the session's image; books calls, nodes and newly encoded patches."""
        session = self.session
        before = session.stats()
        checked_before = session.hit_check.stats() if session.hit_check is not None else None
        results = []
        with q.ledger.stage("search"):
            for target in targets:
                result = session.search(target, on_step=lambda step, t=target: q.emit(ev.search_step(t, step)))
                q.emit(ev.search_done(result))
                q.ledger.search_calls += result.model_calls
                q.ledger.search_nodes += result.nodes_visited
                results.append(result)
        q.ledger.vision_tokens_search += self.search_tokens(before, session.stats())
        if checked_before is not None:  # the hit checks: boxes judged, VQA LLM prompts, search-model calls
            checked = session.hit_check.stats()
            q.ledger.hit_checks += checked.calls - checked_before.calls
            q.ledger.vision_tokens_hit_check += checked.vision_tokens - checked_before.vision_tokens
            q.ledger.llm_calls += checked.llm_calls - checked_before.llm_calls
            q.ledger.search_calls += checked.localizer_calls - checked_before.localizer_calls
        return results

    def search_tokens(self, before: "LocalizerStats", after: "LocalizerStats") -> int:
        """Vision tokens the search model read for the patches it encoded between two snapshots of its
        stats: the VSM's own count (``extra["vision_tokens"]``: each patch's image tokens after
        ``search.token_cut``), else the new patches x :meth:`tokens_per_patch`."""
        if "vision_tokens" in after.extra:
            return int(round(after.extra["vision_tokens"] - before.extra.get("vision_tokens", 0.0)))
        return (after.patches_encoded - before.patches_encoded) * self.tokens_per_patch()

    def tokens_per_patch(self) -> int:
        """Vision tokens one search patch costs without a count of its own: the VSM's image tokens, else
        ``agent.oracle_tokens_per_patch``."""
        loc = self.session.localizer
        if loc.name == "vsm":
            return int(loc.model.image_tokens)
        return self.acfg.oracle_tokens_per_patch

    def _memory(self, q: "_Question", view: Image.Image, results: Sequence["SearchResult"]) -> VisualWorkingMemory:
        """The VWM over the FULL view: found targets with crops cut from the full-resolution image
        (boxes stored in the view's frame), failed searches marked not found."""
        vcfg = self.vqa.vwm_config
        vwm = VisualWorkingMemory(global_image=view, config=vcfg)
        for r in results:
            if not r.found:
                vwm.entries.append(VWMEntry(name=r.target, found=False))
                continue
            crop = region = None
            if sum(e.crop is not None for e in vwm.entries) < vcfg.max_crops:
                cut = extract_crop(self.views.image, r.box_xyxy, vcfg.crop_scale, vcfg.min_context_px,
                                   vcfg.crop_side_px)
                crop, region = cut.image, self.views.to_view_xyxy(cut.region_xyxy, "full")
            vwm.entries.append(VWMEntry(name=r.target, found=True, box_xyxy=self.views.to_view_xyxy(r.box_xyxy, "full"),
                                        score=float(r.score), crop=crop, crop_region_xyxy=region))
        crops = [e.crop for e in vwm.entries if e.crop is not None]
        for crop in crops:  # what the model reads for each (a layout may depend on how many crops there are)
            q.ledger.vision_tokens_crops += self.vqa.crop_image_tokens(self.views.image_tokens(crop), len(crops))
        q.emit({"type": "vwm", "entries": ev.vwm_entries(vwm.entries, lambda b: self.views.to_full_xyxy(b, "full"))})
        return vwm

    def _generated(self, text: str) -> int:
        n = len(self.vqa.tokenizer(text, add_special_tokens=False)["input_ids"])
        return min(n + 1, self.acfg.max_new_tokens) if n < self.acfg.max_new_tokens else n


class _Question:
    """Per-question state: the question, its ledger and its event log."""

    def __init__(self, question: str, options: list[str] | None, on_event: Callable[[dict], None] | None) -> None:
        self.question, self.options, self.on_event = question, options, on_event
        self.ledger = CostLedger()
        self.events: list[dict] = []

    def emit(self, event: dict) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)


def token_keep(budget: "VisionBudgetConfig", processor: Any = None) -> "TokenKeep | None":
    """The token cut the ``vision_budget`` section asks for (None: every vision token is read);
    ``entropy`` reads the pixels back with the VQA ``processor``'s normalisation."""
    from seal.vqa.token_keep import TokenKeep

    if budget.pruning_mode == "none":
        return None
    if budget.pruning_mode == "entropy":
        ip = getattr(processor, "image_processor", None)
        norm = {} if ip is None else {"pixel_mean": tuple(ip.image_mean), "pixel_std": tuple(ip.image_std)}
        return TokenKeep("entropy", entropy=budget.entropy, **norm)
    return TokenKeep(budget.pruning_mode, budget.pruning_ratio,
                     merger_path=budget.merger_path if "merger" in budget.pruning_mode else None,
                     pruners_path=budget.pruners_path if "pruners" in budget.pruning_mode else None)
