"""Reading the broker's /metrics as Prometheus does: the text format, parsed by prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    samples: tuple[Sample, ...]

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly this name and these labels (others may exist); 0 when there is none,
        as Prometheus treats a counter that has not moved yet."""
        found = [s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) <= 1, f"{name} {labels} matches {len(found)} samples: give more labels"
        return found[0] if found else 0.0

    def count(self, histogram: str, **labels: str) -> float:
        """How many observations a histogram series holds (its _count sample)."""
        return self.value(f"{histogram}_count", **labels)

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.samples)

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def parse(text: str) -> Scrape:
    return Scrape(tuple(sample for family in text_string_to_metric_families(text) for sample in family.samples))


def scrape(base_url: str) -> Scrape:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)
