import CBPF
#if canImport(Glibc)
import Glibc
#endif

/// A BPF ring buffer read through libbpf: each record is decoded as `Record`
/// (shorter ones are skipped) and handed to `deliver` from `poll`. Freed when
/// released.
final class RingBuffer {
    private let receive: (UnsafeMutableRawPointer, Int) -> Void
    private var handle: OpaquePointer?

    convenience init<Record>(map: BPFRingBufferMap, as _: Record.Type, deliver: @escaping (Record) -> Void) throws {
        try self.init(map: map, raw: { bytes in
            guard bytes.count >= MemoryLayout<Record>.size, let base = bytes.baseAddress else { return }
            deliver(base.loadUnaligned(as: Record.self))
        })
    }

    /// Hands each record over as raw bytes, valid only during the call.
    init(map: BPFRingBufferMap, raw deliver: @escaping (UnsafeRawBufferPointer) -> Void) throws {
        let mapFD = try map.descriptor()
        receive = { data, size in deliver(UnsafeRawBufferPointer(start: data, count: size)) }
        let callback: ring_buffer_sample_fn = { ctx, data, size in
            guard let ctx, let data else { return 0 }
            Unmanaged<RingBuffer>.fromOpaque(ctx).takeUnretainedValue().receive(data, size)
            return 0
        }
        errno = 0
        guard let rb = ring_buffer__new(mapFD, callback, Unmanaged.passUnretained(self).toOpaque(), nil) else {
            throw TracerError.mapAccess(map: map.name, operation: "open ring buffer", errno: Errno.current)
        }
        handle = rb
    }

    /// Waits up to `timeoutMilliseconds`; returns how many records were handled.
    func poll(timeoutMilliseconds: Int32) -> Int {
        guard let rb = handle else { return 0 }
        let n = ring_buffer__poll(rb, timeoutMilliseconds)
        return n < 0 ? 0 : Int(n)
    }

    /// Reads what is there without waiting.
    func consume() -> Int {
        guard let rb = handle else { return 0 }
        let n = ring_buffer__consume(rb)
        return n < 0 ? 0 : Int(n)
    }

    deinit {
        if let rb = handle { ring_buffer__free(rb) }
    }
}
