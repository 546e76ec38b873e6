"""Labels as users have them (engine.data.labels) and the model-input schema
(engine.train.schema): unit tier."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from engine.data.labels import normalize, resolve
from engine.errors import ConfigError, DataError
from engine.train.schema import InputSchema


@pytest.mark.parametrize(
    ("values", "declared", "positive", "negative"),
    [
        ({"Yes": 3, "No": 5}, None, "yes", "no"),
        ({"yes ": 3, "NO": 5}, None, "yes", "no"),
        ({True: 3, False: 5}, None, "true", "false"),
        ({1: 3, 0: 5}, None, "1", "0"),
        ({1.0: 3, 0.0: 5}, None, "1", "0"),
        ({"Y": 1, "N": 1}, None, "y", "n"),
        ({"churned": 3, "stayed": 5}, "churned", "churned", "stayed"),
        ({"Churned": 3, "Stayed": 5}, "churned", "churned", "stayed"),
        ({2: 3, 7: 5}, 7, "7", "2"),
        ({"yes": 4}, None, "yes", None),  # one value present: still resolvable
    ],
)
def test_positive_value_is_resolved(
    values: dict[object, int], declared: object, positive: str, negative: str | None
) -> None:
    counts = Counter({normalize(k): v for k, v in values.items()})
    lv = resolve("churn", counts, 2, declared)
    assert (lv.positive, lv.negative) == (positive, negative)
    assert lv.missing == 2 and lv.rows == sum(values.values())


def test_labels_that_are_not_binary_or_ambiguous_are_clear_errors() -> None:
    with pytest.raises(DataError, match="3 distinct values") as e:
        resolve("churn", Counter({"yes": 1, "no": 1, "maybe": 1}), 0, None)
    assert "'maybe'" in str(e.value) and "Fix:" in str(e.value)
    with pytest.raises(ConfigError, match="which one is the positive outcome") as e2:
        resolve("churn", Counter({"churned": 1, "stayed": 1}), 0, None)
    assert "label.positive" in str(e2.value)
    with pytest.raises(ConfigError, match="not a value of 'churn'"):
        resolve("churn", Counter({"yes": 1, "no": 1}), 0, "Churned")
    with pytest.raises(DataError, match="no values"):
        resolve("churn", Counter(), 10, None)


def test_schema_frames_categoricals_with_fixed_categories_and_counts_unseen() -> None:
    train = pd.DataFrame(
        {"n": [1, 2, None, 4], "c": ["a", "b", "a", None], "b": [True, False, True, True]}
    )
    s = InputSchema.infer(train, ["n", "c", "b"])
    assert [f.kind for f in s.features] == ["numeric", "categorical", "numeric"]
    assert s.spec("c").categories == ("a", "b")  # most frequent first
    x, unseen = s.frame_and_unseen(pd.DataFrame({"n": ["7"], "c": ["z"], "b": [False]}))
    assert unseen == {"c": 1}
    assert x["n"].dtype == np.float64 and x["n"][0] == 7.0 and x["b"][0] == 0.0
    assert list(x["c"].cat.categories) == ["a", "b"] and pd.isna(x["c"][0])
    assert s.frame(x) is x, "an already-converted frame is not converted again"
    assert InputSchema.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="expected 3 columns"):
        s.frame(np.zeros((2, 2)))
