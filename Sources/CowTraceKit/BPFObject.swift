import CBPF
#if canImport(Glibc)
import Glibc
#endif

/// A libbpf `struct bpf_object` opened from bytes in memory. libbpf parses the
/// ELF lazily until load, so the bytes are kept alive as long as the object.
final class BPFObject {
    let handle: OpaquePointer
    private let bytes: UnsafeMutableRawBufferPointer

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
    }

    deinit {
        bpf_object__close(handle)
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

    func program(_ name: String) -> OpaquePointer? {
        bpf_object__find_program_by_name(handle, name)
    }

    /// Loads only these programs; the verifier never sees the others.
    func enableOnly(_ names: Set<String>) {
        var prog = bpf_object__next_program(handle, nil)
        while let p = prog {
            bpf_program__set_autoload(p, names.contains(String(cString: bpf_program__name(p))))
            prog = bpf_object__next_program(handle, p)
        }
    }

    func map(_ name: String) -> OpaquePointer? {
        bpf_object__find_map_by_name(handle, name)
    }

    func mapDescriptor(_ name: String) throws -> Int32 {
        guard let m = map(name) else {
            throw TracerError.mapAccess(map: name, operation: "find", errno: .noEntry)
        }
        let fd = bpf_map__fd(m)
        guard fd >= 0 else { throw TracerError.mapAccess(map: name, operation: "get fd of", errno: Errno(fd)) }
        return fd
    }

    func setMaxEntries(_ name: String, _ entries: UInt32) {
        if let m = map(name) { bpf_map__set_max_entries(m, entries) }
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

    /// Runs a loaded `SEC("syscall")` program once with `context` as its
    /// argument; the kernel copies the context back, so outputs land in it.
    func run<Context>(_ name: String, context: inout Context) throws {
        guard let prog = program(name) else {
            throw TracerError.mapAccess(map: name, operation: "find program", errno: .noEntry)
        }
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        let rc = withUnsafeMutableBytes(of: &context) { ctx -> Int32 in
            opts.ctx_in = UnsafeRawPointer(ctx.baseAddress)
            opts.ctx_size_in = UInt32(ctx.count)
            return bpf_prog_test_run_opts(bpf_program__fd(prog), &opts)
        }
        if rc != 0 {
            throw TracerError.mapAccess(map: name, operation: "run program", errno: Errno(rc))
        }
    }

    func attach(_ name: String, tier: AttachTier) throws -> BPFLink {
        guard let prog = program(name) else {
            throw TracerError.attachFailed(tier: tier, program: name, errno: .noEntry)
        }
        errno = 0
        guard let link = bpf_program__attach(prog) else {
            throw TracerError.attachFailed(tier: tier, program: name, errno: Errno.current)
        }
        return BPFLink(handle: link, program: name)
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
