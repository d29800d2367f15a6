"""Multimodal samples, datasets and the embedded ``digits`` dataset."""

from graphmm.data.audio_folder import (
    AudioRecord,
    AudioRecords,
    load_audio_folder,
    read_audio_records,
)
from graphmm.data.avdigits import load_avdigits
from graphmm.data.dataset import SampleDataset
from graphmm.data.digits import DIGIT_WORDS, DTMF_FREQS, DigitsConfig, load_digits
from graphmm.data.images import load_image_arrays, load_image_folder, read_image_arrays
from graphmm.data.io import DataSplits
from graphmm.data.manifest import ManifestSplits, load_manifest
from graphmm.data.sample import MODALITIES, Sample
from graphmm.data.textcls import load_textcls
from graphmm.data.transforms import ModalityDropout

__all__ = [
    "DIGIT_WORDS",
    "DTMF_FREQS",
    "MODALITIES",
    "AudioRecord",
    "AudioRecords",
    "DataSplits",
    "DigitsConfig",
    "ManifestSplits",
    "ModalityDropout",
    "Sample",
    "SampleDataset",
    "load_audio_folder",
    "load_avdigits",
    "load_digits",
    "load_image_arrays",
    "load_image_folder",
    "load_manifest",
    "load_textcls",
    "read_audio_records",
    "read_image_arrays",
]
