"""A workload stream: who sends what, at what rate or concurrency, from which trace."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ..spec.base import PerSecond, Seconds, Spec
from ..spec.slo import Slo
from .arrivals import Arrival, Trace
from .distributions import AudioSeconds, Length
from .media import ImageRequest, VideoRequest
from .sessions import Session, SystemPrompt

# priorities are compared as 64-bit integers in the compiled scheduler; any class order fits well inside
PRIORITY_LIMIT = 1_000_000


class Stream(Spec):
    """Open loop (arrivals at a rate, or a trace) or closed loop (`concurrency` clients that
    each send their next request when the last one ends, `think_time` later, until `requests`
    have been sent; with concurrency = requests all arrive at once, as in offline benchmarks)."""

    name: str = Field(description="the stream's name, in requests.parquet and the summary")
    model: str | None = Field(default=None, description="the model asked for; may be left out when the fleet "
                                                        "serves one model")
    rate: PerSecond | None = Field(default=None, description="mean arrivals per second (a session stream: sessions "
                                                             "started; a trace: its timing rescaled to this mean)")
    arrival: Arrival = Field(default=Arrival(), description="how arrivals spread around the rate (`poisson` is "
                                                            "short for {process: poisson})")
    prompt_tokens: Length | None = Field(default=None, description="tokens per prompt")
    output_tokens: Length | None = Field(default=None, description="tokens per answer")
    trace: Trace | None = Field(default=None, description="replay a trace file instead of drawing arrivals "
                                                          "and lengths")
    requests: int | None = Field(default=None, ge=1, description="stop after this many requests")
    concurrency: int | None = Field(default=None, ge=1, description="closed loop: requests kept outstanding")
    think_time: Seconds = Field(default=0.0, ge=0, description="closed loop: pause between a reply and the "
                                                               "client's next request")
    tenant: str | None = Field(default=None, description="who sends it (default: the stream's name)")
    priority: int = Field(default=0, ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT,
                          description="class: higher goes first at routers and engines")
    slo: Slo | None = Field(default=None, description="this tenant's targets (default: the scenario's)")
    session: Session | None = Field(default=None, description="each arrival starts a session: a graph of calls")
    system_prompt: SystemPrompt | None = Field(default=None, description="tokens every prompt starts with, one "
                                                                        "of `variants` shared system prompts")
    # requests beyond chat text (sim.demand.media): their token counts are derived from these
    audio_seconds: AudioSeconds | None = Field(default=None, description="speech models: seconds of audio "
                                                                         "per request (to transcribe or to say)")
    image: ImageRequest | None = Field(default=None, description="image models: {width, height, steps, images}")
    video: VideoRequest | None = Field(default=None, description="video models: {width, height, frames, steps}")

    @field_validator("arrival", mode="before")
    @classmethod
    def _arrival_shorthand(cls, v):
        return {"process": v} if isinstance(v, str) else v

    @field_validator("rate")
    @classmethod
    def _positive(cls, v):
        if v is not None and v <= 0:
            raise ValueError(f"rate must be positive, got {v:g}/s")
        return v

    @property
    def closed_loop(self) -> bool:
        return self.concurrency is not None

    @model_validator(mode="after")
    def _complete(self):
        media = [f for f in ("audio_seconds", "image", "video") if getattr(self, f) is not None]
        if len(media) > 1:
            raise ValueError(f"give one of audio_seconds, image, video (got {', '.join(media)})")
        if self.system_prompt is not None and (media or self.trace is not None or self.session is not None):
            raise ValueError("system_prompt: applies to streams that draw prompt_tokens (a session gives its own "
                             "under session:, a trace's prompts are as recorded, media requests have none)")
        if media:
            clash = [f for f in ("output_tokens", "trace", "session") if getattr(self, f) is not None]
            if media[0] != "audio_seconds" and self.prompt_tokens is not None:
                clash.insert(0, "prompt_tokens")
            if clash:
                raise ValueError(f"{media[0]}: sets the requests' sizes; remove {', '.join(clash)}")
        if self.session is not None:
            clash = [f for f in ("prompt_tokens", "output_tokens", "trace", "concurrency")
                     if getattr(self, f) is not None]
            if clash:
                raise ValueError(f"a session stream draws its calls from session:; remove {', '.join(clash)}")
            if self.rate is None:
                raise ValueError("a session stream needs rate: (sessions started per second)")
            return self
        if self.closed_loop:
            if self.requests is None:
                raise ValueError("a closed-loop stream (concurrency:) needs requests: the number to send")
            if self.rate is not None or self.trace is not None or self.arrival != Arrival():
                raise ValueError("a closed-loop stream sends its next request when one ends; "
                                 "remove rate/arrival/trace (or remove concurrency for open-loop arrivals)")
            if (self.prompt_tokens is None or self.output_tokens is None) and not media:
                raise ValueError("a closed-loop stream needs prompt_tokens and output_tokens")
            return self
        if self.think_time:
            raise ValueError("think_time applies to closed-loop streams (with concurrency:) only")
        if self.trace is None:
            needed = ("rate",) if media else ("rate", "prompt_tokens", "output_tokens")
            missing = [f for f in needed if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a synthetic stream needs {', '.join(missing)} (or trace: to replay a file)")
        elif self.prompt_tokens is not None or self.output_tokens is not None or self.arrival != Arrival():
            raise ValueError("a trace stream takes arrivals and lengths from the file; "
                             "remove arrival/prompt_tokens/output_tokens (rate: rescales its timing)")
        return self
