//! Recognises audio files by their first bytes. Discord calls the Opus encoding of voice messages
//! "an implementation detail" and `content_type` is sometimes missing, so names and declared MIME
//! types are only hints; the bytes decide.

/// What a file holds, as far as its magic bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// Ogg with an Opus first packet: what Discord records.
    OggOpus,
    /// Ogg with a Vorbis first packet.
    OggVorbis,
    /// Ogg with some other codec (FLAC, Speex, Theora, …).
    OggOther,
    Wav,
    Mp3,
    /// MP4/M4A (an `ftyp` box).
    Mp4,
    Flac,
    /// WebM/Matroska (EBML).
    WebM,
    Unknown,
}

/// Ogg page header size before the segment table.
const OGG_HEADER_LEN: usize = 27;

impl AudioFormat {
    /// The MIME type to declare when sending the bytes to a provider.
    pub fn mime(self) -> &'static str {
        match self {
            Self::OggOpus | Self::OggVorbis | Self::OggOther => "audio/ogg",
            Self::Wav => "audio/wav",
            Self::Mp3 => "audio/mpeg",
            Self::Mp4 => "audio/mp4",
            Self::Flac => "audio/flac",
            Self::WebM => "audio/webm",
            Self::Unknown => "application/octet-stream",
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::OggOpus => "Ogg/Opus",
            Self::OggVorbis => "Ogg/Vorbis",
            Self::OggOther => "Ogg (not Opus)",
            Self::Wav => "WAV",
            Self::Mp3 => "MP3",
            Self::Mp4 => "MP4/M4A",
            Self::Flac => "FLAC",
            Self::WebM => "WebM",
            Self::Unknown => "unknown",
        }
    }

    /// A file name extension that matches the format (some servers check it).
    pub fn extension(self) -> &'static str {
        match self {
            Self::OggOpus | Self::OggVorbis | Self::OggOther => "ogg",
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
            Self::Mp4 => "m4a",
            Self::Flac => "flac",
            Self::WebM => "webm",
            Self::Unknown => "bin",
        }
    }
}

/// The format of `bytes`, from their magic numbers.
pub fn sniff(bytes: &[u8]) -> AudioFormat {
    if bytes.starts_with(b"OggS") {
        return sniff_ogg(bytes);
    }
    if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WAVE" {
        return AudioFormat::Wav;
    }
    if bytes.starts_with(b"fLaC") {
        return AudioFormat::Flac;
    }
    if bytes.starts_with(b"ID3")
        || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0)
    {
        return AudioFormat::Mp3;
    }
    if bytes.len() >= 8 && &bytes[4..8] == b"ftyp" {
        return AudioFormat::Mp4;
    }
    if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return AudioFormat::WebM;
    }
    AudioFormat::Unknown
}

/// Looks at the first packet of the first page (it always starts on that page, RFC 3533).
fn sniff_ogg(bytes: &[u8]) -> AudioFormat {
    let Some(&segments) = bytes.get(OGG_HEADER_LEN - 1) else {
        return AudioFormat::OggOther;
    };
    let body = OGG_HEADER_LEN + usize::from(segments);
    let packet = bytes.get(body..).unwrap_or_default();
    if packet.starts_with(b"OpusHead") {
        AudioFormat::OggOpus
    } else if packet.starts_with(b"\x01vorbis") {
        AudioFormat::OggVorbis
    } else {
        AudioFormat::OggOther
    }
}

/// The codec an Ogg stream's first packet names, for error messages.
pub fn ogg_codec_name(first_packet: &[u8]) -> &'static str {
    const CODECS: [(&[u8], &str); 5] = [
        (b"\x01vorbis", "Vorbis"),
        (b"\x7fFLAC", "FLAC"),
        (b"Speex   ", "Speex"),
        (b"\x80theora", "Theora"),
        (b"OpusHead", "Opus"),
    ];
    CODECS
        .iter()
        .find(|(magic, _)| first_packet.starts_with(magic))
        .map_or("an unknown codec", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ogg_page(packet: &[u8]) -> Vec<u8> {
        let mut page = b"OggS".to_vec();
        page.extend_from_slice(&[0u8; 22]);
        page.push(1);
        page.push(u8::try_from(packet.len()).unwrap());
        page.extend_from_slice(packet);
        page
    }

    #[test]
    fn formats_by_magic() {
        assert_eq!(sniff(&ogg_page(b"OpusHead\x01\x01")), AudioFormat::OggOpus);
        assert_eq!(sniff(&ogg_page(b"\x01vorbis\0\0")), AudioFormat::OggVorbis);
        assert_eq!(sniff(&ogg_page(b"\x7fFLAC")), AudioFormat::OggOther);
        assert_eq!(sniff(b"OggS"), AudioFormat::OggOther);
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), AudioFormat::Wav);
        assert_eq!(sniff(b"ID3\x04"), AudioFormat::Mp3);
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90]), AudioFormat::Mp3);
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A "), AudioFormat::Mp4);
        assert_eq!(sniff(b"fLaC"), AudioFormat::Flac);
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 1]), AudioFormat::WebM);
        assert_eq!(sniff(b""), AudioFormat::Unknown);
        assert_eq!(sniff(b"hello world"), AudioFormat::Unknown);
        assert_eq!(ogg_codec_name(b"\x01vorbis"), "Vorbis");
        assert_eq!(ogg_codec_name(b"nope"), "an unknown codec");
    }
}
