"""Few-shot datasets, episodes and prompts generated from masks.

- :func:`build_dataset` reads a benchmark fold (COCO-20i, LVIS-92i, FSS-1000, PASCAL-5i,
  Pascal-Part, PACO-Part) in the layouts of HSNet/Matcher; :class:`~sansa.data.folder.FolderDataset`
  reads any folder of images with masks.
- :func:`~sansa.data.episodes.sample_episodes` draws a seeded episode list (saved as JSON).
- :func:`~sansa.data.prompts.sample_prompt` makes point/box/scribble/mask prompts from a mask.
"""

from sansa.data.benchmarks import SPECS, Benchmark, BenchmarkSpec, build_dataset
from sansa.data.common import DatasetError, Split, squash
from sansa.data.episode import Episode, FewShotDataset, Sampling
from sansa.data.episodes import EpisodeList, load_episodes, sample_episodes, save_episodes
from sansa.data.prompts import sample_prompt

__all__ = [
    "SPECS",
    "Benchmark",
    "BenchmarkSpec",
    "DatasetError",
    "Episode",
    "EpisodeList",
    "FewShotDataset",
    "Sampling",
    "Split",
    "build_dataset",
    "load_episodes",
    "sample_episodes",
    "sample_prompt",
    "save_episodes",
    "squash",
]
