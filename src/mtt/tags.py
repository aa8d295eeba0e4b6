"""Tag vocabularies."""

# The MSD top-50 Last.fm tags used with CALS, in the published model's output order.
MSD_TOP50 = [
    "rock", "pop", "indie", "alternative", "electronic", "hip-hop", "metal", "jazz", "punk",
    "folk", "alternative rock", "indie rock", "dance", "hard rock", "00s", "soul", "hardcore",
    "80s", "country", "classic rock", "punk rock", "blues", "chillout", "experimental",
    "heavy metal", "death metal", "90s", "reggae", "progressive rock", "ambient", "acoustic",
    "beautiful", "british", "rnb", "funk", "metalcore", "mellow", "world", "guitar", "trance",
    "indie pop", "christian", "house", "spanish", "latin", "psychedelic", "electro", "piano",
    "70s", "progressive metal",
]
assert len(MSD_TOP50) == 50


def read_tag_list(path) -> list[str]:
    """One tag per line; blank lines and lines starting with '#' are ignored."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]
