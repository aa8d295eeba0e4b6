"""Tag vocabularies (a tag list file is read with `mtt.formats.split_folder.read_tag_list`)."""

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
