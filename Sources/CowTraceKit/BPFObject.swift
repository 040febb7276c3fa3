import CBPF
#if canImport(Glibc)
import Glibc
#endif

/// A libbpf `struct bpf_object` opened from bytes in memory. libbpf parses the
/// ELF lazily until load, so the bytes are kept alive as long as the object.
/// Its maps and programs are reached through typed handles (`BPFMap`,
/// `BPFRingBufferMap`, `BPFProgram`), found and checked once after opening.
final class BPFObject {
    /// Valid until `close()`.
    let handle: OpaquePointer
    /// The object's name (bpf/NAME.bpf.c), for error messages.
    let name: String
    private let bytes: UnsafeMutableRawBufferPointer
    private(set) var isClosed = false

    init(bytes source: [UInt8], name: String) throws {
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: source.count, alignment: 8)
        bytes.copyBytes(from: source)
        errno = 0
        guard let obj = cbpf_open_object(bytes.baseAddress, bytes.count, name) else {
            let err = Errno.current
            bytes.deallocate()
            throw TracerError.openObject(err)
        }
        handle = obj
        self.name = name
    }

    /// Frees the maps and programs (attached links stay until destroyed);
    /// handles into the object throw from then on.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        bpf_object__close(handle)
    }

    deinit {
        close()
        bytes.deallocate()
    }

    var programNames: [String] {
        var names: [String] = []
        var prog = bpf_object__next_program(handle, nil)
        while let p = prog {
            names.append(String(cString: bpf_program__name(p)))
            prog = bpf_object__next_program(handle, p)
        }
        return names
    }

    /// The typed handle of a map; throws if the object has no such map or
    /// its sizes are not those of `Key` and `Value`.
    func map<Key, Value>(_ name: String, key _: Key.Type, value _: Value.Type, valueElements: Int = 1) throws -> BPFMap<Key, Value> {
        try BPFMap(self, name, valueElements: valueElements)
    }

    func ringBuffer(_ name: String) throws -> BPFRingBufferMap {
        try BPFRingBufferMap(self, name)
    }

    func program(_ name: String) throws -> BPFProgram {
        try BPFProgram(self, name)
    }

    /// Loads only these programs; the verifier never sees the others.
    /// Throws if one of them is not in the object.
    func enableOnly(_ names: Set<String>) throws {
        let known = Set(programNames)
        if let unknown = names.subtracting(known).sorted().first {
            throw TracerError.unknownProgram(program: unknown, object: name)
        }
        var prog = bpf_object__next_program(handle, nil)
        while let p = prog {
            bpf_program__set_autoload(p, names.contains(String(cString: bpf_program__name(p))))
            prog = bpf_object__next_program(handle, p)
        }
    }

    /// A `const volatile` global in .rodata, writable until load.
    func rodataVariable<T>(_ name: String, as type: T.Type) -> UnsafeMutablePointer<T>? {
        var size = 0
        guard let raw = cbpf_rodata_variable(handle, name, &size), size == MemoryLayout<T>.size else {
            return nil
        }
        return raw.bindMemory(to: T.self, capacity: 1)
    }

    /// Loads the enabled programs; throws the errno and the tail of libbpf's log.
    func load(tier: AttachTier) throws {
        cbpf_clear_libbpf_output()
        let rc = bpf_object__load(handle)
        if rc != 0 {
            throw TracerError.loadFailed(tier: tier, errno: Errno(rc), detail: LibBPFLog.lastMeaningfulLine())
        }
    }

    /// Attaches each named program (found by its handle).
    func attach(_ names: [String], tier: AttachTier) throws -> [BPFLink] {
        try names.map { try program($0).attach(tier: tier) }
    }
}

/// An attached program; destroying the link detaches it.
final class BPFLink {
    let handle: OpaquePointer
    let program: String

    init(handle: OpaquePointer, program: String) {
        self.handle = handle
        self.program = program
    }

    deinit { bpf_link__destroy(handle) }
}

/// libbpf's messages, captured instead of printed (see cbpf.c).
enum LibBPFLog {
    static func enableCapture(verbose: Bool) { cbpf_capture_libbpf_output(verbose ? 1 : 0) }

    static func captured() -> String {
        var buffer = [CChar](repeating: 0, count: 16384)
        _ = cbpf_captured_libbpf_output(&buffer, buffer.count)
        return String(cString: buffer)
    }

    /// The last line that explains a failure, without libbpf's prefix noise.
    static func lastMeaningfulLine() -> String {
        let lines = captured().split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let interesting = lines.last { $0.contains("failed") || $0.contains("error") || $0.contains("Error") }
        return String((interesting ?? lines.last ?? "").prefix(300))
    }
}

extension String {
    func trimmingCharacters(in set: Set<Character>) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

extension Set where Element == Character {
    static let whitespaces: Set<Character> = [" ", "\t", "\n", "\r"]
}
