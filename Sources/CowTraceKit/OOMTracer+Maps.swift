import CBPF

/// The maps of bpf/oom.bpf.c that user space touches.
struct OOMMaps {
    /// Per CPU, by enum oom_drop_reason.
    let drops: BPFMap<UInt32, UInt64>
    let events: BPFRingBufferMap

    init(_ object: BPFObject) throws {
        drops = try object.map("drops", key: UInt32.self, value: UInt64.self)
        events = try object.ringBuffer("events")
    }
}
