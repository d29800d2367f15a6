"""Multimodal samples, datasets and the embedded ``digits`` dataset."""

from graphmm.data.dataset import SampleDataset
from graphmm.data.digits import DIGIT_WORDS, DTMF_FREQS, DigitsConfig, load_digits
from graphmm.data.manifest import ManifestSplits, load_manifest
from graphmm.data.sample import MODALITIES, Sample
from graphmm.data.transforms import ModalityDropout

__all__ = [
    "DIGIT_WORDS",
    "DTMF_FREQS",
    "MODALITIES",
    "ModalityDropout",
    "DigitsConfig",
    "ManifestSplits",
    "Sample",
    "SampleDataset",
    "load_digits",
    "load_manifest",
]
