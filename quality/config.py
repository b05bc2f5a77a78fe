"""The ``[quality]`` configuration section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["QualityConfig", "SurveyTexts"]


class SurveyTexts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=500)
    invalid: str = Field(min_length=1, max_length=500)
    thanks: str = Field(min_length=1, max_length=500)


DEFAULT_TEXTS = {
    "zh": SurveyTexts(
        question=(
            "请对本次服务进行评价。非常满意请按5。满意请按4。一般请按3。"
            "不满意请按2。非常不满意请按1。"
        ),
        invalid="输入有误。请按1到5。",
        thanks="感谢您的评价。再见。",
    ),
    "en": SurveyTexts(
        question=(
            "Please rate our service. Press 5 for very satisfied, 4 for satisfied, "
            "3 for neutral, 2 for dissatisfied, 1 for very dissatisfied."
        ),
        invalid="Please press a key from 1 to 5.",
        thanks="Thank you for your feedback. Goodbye.",
    ),
}


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: what the survey says, per queue language (spoken by the IVR's text-to-speech)
    survey_texts: dict[str, SurveyTexts] = Field(default_factory=lambda: dict(DEFAULT_TEXTS))
    #: seconds the caller has to press a key after the question
    survey_timeout_s: float = Field(6.0, ge=1, le=30)
    #: times the question is asked (an invalid key or no key asks again)
    survey_attempts: int = Field(2, ge=1, le=5)
