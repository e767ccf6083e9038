"""Audio data: labelled recording sets, decoding, the Free Spoken Digit Dataset, audio folders and splits.

Dimensions: ``N`` recordings, ``S_i`` samples of recording ``i``, mono ``float32`` in ``[-1, 1]`` at one rate.

- :class:`AudioSet`: waveforms ``(S_i,)`` with string labels, sources, the sample rate and (FSDD) speakers;
  every loader returns one.
- :func:`decode_audio` (:class:`AudioDecodeOptions`, :func:`decode_audio_with`, :func:`read_audio_file`): one
  WAV, FLAC or OGG file's bytes -> mono at a sample rate, the conversion shared by datasets, folders and
  uploads; every bad input is an :class:`AudioError`.
- :func:`load_fsdd`, :func:`parse_fsdd_name`, :func:`fsdd_split` (``official`` or ``speaker:NAME``): FSDD
  v1.0.10, every recording verified; :func:`load_audio_dataset` (``"fsdd:test"``), :func:`parse_audio_name`
  and :func:`get_audio_dataset` over the registry :data:`AUDIO_DATASETS`.
- :func:`load_audio_folder` (with an :class:`AudioFolderReport`): ``<root>/<class>/<file>.wav|.flac|.ogg``;
  :func:`is_audio_folder` tells one from an image or a text folder.
- :func:`carve_audio_validation`: a validation set stratified by (speaker, label), or by label.
"""

from attnkit.data.audio.audioset import AudioSet
from attnkit.data.audio.builtin import (
    AUDIO_DATASETS,
    AudioDataset,
    get_audio_dataset,
    load_audio_dataset,
    parse_audio_name,
)
from attnkit.data.audio.decode import (
    AUDIO_SUFFIXES,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CHANNELS,
    AudioDecodeOptions,
    AudioError,
    decode_audio,
    decode_audio_with,
    read_audio_file,
)
from attnkit.data.audio.folder import AudioFolderReport, is_audio_folder, load_audio_folder
from attnkit.data.audio.fsdd import FsddName, fsdd_split, load_fsdd, parse_fsdd_name
from attnkit.data.audio.splits import carve_audio_validation

__all__ = [
    "AUDIO_DATASETS",
    "AUDIO_SUFFIXES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CHANNELS",
    "AudioDataset",
    "AudioDecodeOptions",
    "AudioError",
    "AudioFolderReport",
    "AudioSet",
    "FsddName",
    "carve_audio_validation",
    "decode_audio",
    "decode_audio_with",
    "fsdd_split",
    "get_audio_dataset",
    "is_audio_folder",
    "load_audio_dataset",
    "load_audio_folder",
    "load_fsdd",
    "parse_audio_name",
    "parse_fsdd_name",
    "read_audio_file",
]
