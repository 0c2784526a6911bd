//! The L2 frame format of the DPDK transport: an Ethernet header with a local experimental
//! ethertype, then a fixed 24-byte Rehearsal header, then (a fragment of) the message.
//!
//! ```text
//! offset size field
//!      0    6 destination MAC
//!      6    6 source MAC
//!     12    2 ethertype, 0x88B5 (IEEE 802 local experimental ethertype 1)
//!     14    1 version, 1
//!     15    1 flags, 0 (reserved: sent as 0, ignored on receipt)
//!     16    2 fragment length: message bytes carried by this frame
//!     18    4 source node id
//!     22    4 destination node id
//!     26    4 message id: per sender, +1 for every message (wrapping)
//!     30    4 message length, in bytes
//!     34    4 fragment offset: where this frame's bytes go in the message
//!     38    - the fragment's bytes, then possibly padding (a NIC pads short frames to 60)
//! ```
//!
//! Every multi-byte field is big-endian (network order).

use rehearsal_sim_core::NodeId;

/// The ethertype of Rehearsal frames: IEEE 802 "local experimental ethertype 1".
pub const ETHERTYPE: u16 = 0x88B5;

/// The frame format version this build sends and accepts.
pub const FRAME_VERSION: u8 = 1;

/// Bytes of the Ethernet header (destination and source MAC, ethertype; no VLAN tag).
pub const ETHERNET_HEADER_BYTES: usize = 14;

/// Bytes in front of a fragment's payload: the Ethernet header and the Rehearsal header.
pub const FRAME_HEADER_BYTES: usize = ETHERNET_HEADER_BYTES + 24;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// `ff:ff:ff:ff:ff:ff`: every station on the segment receives the frame. The default
    /// destination on point-to-point links, where the node id in the header is what
    /// addresses a frame.
    pub const BROADCAST: MacAddress = MacAddress([0xff; 6]);
}

impl std::fmt::Display for MacAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The Rehearsal header of one frame (everything after the Ethernet header but the
/// fragment's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The sending node.
    pub src: NodeId,
    /// The node the message is for.
    pub dst: NodeId,
    /// The sender's number for this message; all fragments of a message carry the same.
    pub message_id: u32,
    /// Length of the whole message, in bytes.
    pub message_bytes: u32,
    /// Where this fragment's bytes start in the message.
    pub fragment_offset: u32,
    /// Bytes of the message this frame carries.
    pub fragment_bytes: u16,
}

/// Why a received frame was dropped before reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the Ethernet header, or than the Rehearsal header after a Rehearsal
    /// ethertype.
    ShortHeader,
    /// Not a Rehearsal frame (another ethertype, or a VLAN tag).
    WrongEthertype,
    /// A Rehearsal frame of a version this build does not speak.
    UnsupportedVersion,
    /// The lengths disagree: the fragment length runs past the end of the frame, or the
    /// fragment past the end of its message, or an empty fragment of a non-empty message.
    BadLength,
}

impl FrameHeader {
    /// The first [`FRAME_HEADER_BYTES`] of a frame carrying this header from `src_mac` to
    /// `dst_mac`.
    pub fn encode(&self, dst_mac: MacAddress, src_mac: MacAddress) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out[0..6].copy_from_slice(&dst_mac.0);
        out[6..12].copy_from_slice(&src_mac.0);
        out[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        out[14] = FRAME_VERSION;
        out[15] = 0;
        out[16..18].copy_from_slice(&self.fragment_bytes.to_be_bytes());
        out[18..22].copy_from_slice(&self.src.0.to_be_bytes());
        out[22..26].copy_from_slice(&self.dst.0.to_be_bytes());
        out[26..30].copy_from_slice(&self.message_id.to_be_bytes());
        out[30..34].copy_from_slice(&self.message_bytes.to_be_bytes());
        out[34..38].copy_from_slice(&self.fragment_offset.to_be_bytes());
        out
    }

    /// Checks a received frame and splits it into its header and its fragment's bytes
    /// (without any padding that follows them).
    pub fn parse(frame: &[u8]) -> Result<(FrameHeader, &[u8]), Malformed> {
        if frame.len() < ETHERNET_HEADER_BYTES {
            return Err(Malformed::ShortHeader);
        }
        if u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE {
            return Err(Malformed::WrongEthertype);
        }
        if frame.len() < FRAME_HEADER_BYTES {
            return Err(Malformed::ShortHeader);
        }
        if frame[14] != FRAME_VERSION {
            return Err(Malformed::UnsupportedVersion);
        }
        let u32_at = |at: usize| {
            u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
        };
        let header = FrameHeader {
            fragment_bytes: u16::from_be_bytes([frame[16], frame[17]]),
            src: NodeId(u32_at(18)),
            dst: NodeId(u32_at(22)),
            message_id: u32_at(26),
            message_bytes: u32_at(30),
            fragment_offset: u32_at(34),
        };
        let fragment_bytes = usize::from(header.fragment_bytes);
        let fragment_end = u64::from(header.fragment_offset) + u64::from(header.fragment_bytes);
        if fragment_bytes > frame.len() - FRAME_HEADER_BYTES
            || fragment_end > u64::from(header.message_bytes)
            || (fragment_bytes == 0 && header.message_bytes != 0)
        {
            return Err(Malformed::BadLength);
        }
        let payload = &frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + fragment_bytes];
        Ok((header, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(message_bytes: u32, fragment_offset: u32, fragment_bytes: u16) -> FrameHeader {
        FrameHeader {
            src: NodeId(7),
            dst: NodeId(0x0102_0304),
            message_id: 9,
            message_bytes,
            fragment_offset,
            fragment_bytes,
        }
    }

    fn frame(header: &FrameHeader, payload: &[u8]) -> Vec<u8> {
        let mut out = header
            .encode(MacAddress::BROADCAST, MacAddress([2, 0, 0, 0, 0, 1]))
            .to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn header_layout_is_the_documented_one() {
        let bytes = header(5, 0, 5).encode(
            MacAddress([1, 2, 3, 4, 5, 6]),
            MacAddress([7, 8, 9, 10, 11, 12]),
        );
        let expected: [u8; FRAME_HEADER_BYTES] = [
            1, 2, 3, 4, 5, 6, // destination MAC
            7, 8, 9, 10, 11, 12, // source MAC
            0x88, 0xB5, // ethertype
            1, 0, // version, flags
            0, 5, // fragment length
            0, 0, 0, 7, // source node
            1, 2, 3, 4, // destination node
            0, 0, 0, 9, // message id
            0, 0, 0, 5, // message length
            0, 0, 0, 0, // fragment offset
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn a_frame_parses_back_to_its_header_and_payload_without_padding() {
        let h = header(3, 0, 3);
        let mut bytes = frame(&h, b"abc");
        bytes.resize(60, 0); // Ethernet minimum-size padding
        assert_eq!(FrameHeader::parse(&bytes), Ok((h, &b"abc"[..])));
        let empty = header(0, 0, 0);
        assert_eq!(
            FrameHeader::parse(&frame(&empty, b"")),
            Ok((empty, &b""[..]))
        );
    }

    #[test]
    fn malformed_frames_are_told_apart() {
        let good = frame(&header(3, 0, 3), b"abc");
        assert_eq!(FrameHeader::parse(&good[..13]), Err(Malformed::ShortHeader));
        assert_eq!(FrameHeader::parse(&good[..30]), Err(Malformed::ShortHeader));
        let mut other = good.clone();
        other[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(FrameHeader::parse(&other), Err(Malformed::WrongEthertype));
        let mut version = good.clone();
        version[14] = 2;
        assert_eq!(
            FrameHeader::parse(&version),
            Err(Malformed::UnsupportedVersion)
        );
        // Fragment length past the end of the frame.
        assert_eq!(FrameHeader::parse(&good[..40]), Err(Malformed::BadLength));
        // Fragment past the end of its message.
        let past = frame(&header(4, 2, 3), b"abc");
        assert_eq!(FrameHeader::parse(&past), Err(Malformed::BadLength));
        // Empty fragment of a non-empty message.
        let empty = frame(&header(4, 0, 0), b"");
        assert_eq!(FrameHeader::parse(&empty), Err(Malformed::BadLength));
    }
}
