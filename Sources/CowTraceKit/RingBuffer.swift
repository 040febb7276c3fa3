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

    init<Record>(mapFD: Int32, map: String, as _: Record.Type, deliver: @escaping (Record) -> Void) throws {
        receive = { data, size in
            guard size >= MemoryLayout<Record>.size else { return }
            deliver(data.loadUnaligned(as: Record.self))
        }
        let callback: ring_buffer_sample_fn = { ctx, data, size in
            guard let ctx, let data else { return 0 }
            Unmanaged<RingBuffer>.fromOpaque(ctx).takeUnretainedValue().receive(data, size)
            return 0
        }
        errno = 0
        guard let rb = ring_buffer__new(mapFD, callback, Unmanaged.passUnretained(self).toOpaque(), nil) else {
            throw TracerError.mapAccess(map: map, operation: "open ring buffer", errno: Errno.current)
        }
        handle = rb
    }

    /// Waits up to `timeoutMilliseconds`; returns how many records were handled.
    func poll(timeoutMilliseconds: Int32) -> Int {
        guard let rb = handle else { return 0 }
        let n = ring_buffer__poll(rb, timeoutMilliseconds)
        return n < 0 ? 0 : Int(n)
    }

    deinit {
        if let rb = handle { ring_buffer__free(rb) }
    }
}
