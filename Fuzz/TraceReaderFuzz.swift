// libFuzzer target for TraceFileReader (scripts/fuzz builds and runs it).
//
// Compiled together with Sources/CowTraceFaultClass/*.swift and Sources/CowTraceFormat/*.swift into one module, so
// it can use the internal encoder. For every input it:
//   1. reads the bytes strictly, with salvage, and streaming with salvage,
//      and checks that the three agree;
//   2. re-encodes whatever was read and checks that it reads back the same;
//   3. does all that again on a copy whose block checksums were recomputed,
//      so that mutations get past the CRCs into the header and record decoders.
// Any crash, trap, sanitizer report or failed invariant is a finding.

@_cdecl("LLVMFuzzerTestOneInput")
public func traceReaderFuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    checkReader(bytes)
    if size >= TraceFormat.preambleSize + TraceFormat.blockHeaderSize {
        var copy = [UInt8](bytes)
        resealBlocks(&copy)
        copy.withUnsafeBytes { checkReader($0) }
    }
    return 0
}

func checkReader(_ bytes: UnsafeRawBufferPointer) {
    let strict = try? TraceFileReader.read(bytes: bytes, path: "fuzz")
    var salvageError: TraceFileError?
    var salvaged: TraceContents?
    do { salvaged = try TraceFileReader.read(bytes: bytes, path: "fuzz", salvage: true) } catch {
        salvageError = error as? TraceFileError
        precondition(salvageError != nil, "salvage threw a non-TraceFileError: \(error)")
    }
    var streamedCount = 0
    let streamed = try? TraceFileReader.forEachRecord(bytes: bytes, path: "fuzz", salvage: true) { _ in streamedCount += 1 }

    if let strict = strict {
        precondition(salvaged == strict, "salvage differs from a strict read that succeeded")
        if case .damaged? = strict.cut { preconditionFailure("a strict read reported damage as a cut") }
    }
    if let s = salvaged {
        guard let streamed = streamed else { preconditionFailure("streaming failed where read succeeded") }
        precondition(streamed.records == s.records.count && streamedCount == s.records.count, "record counts differ")
        precondition(streamed.cut == s.cut && streamed.blocks == s.blocks && streamed.header == s.header, "summaries differ")
        precondition(s.cut != nil || s.records.contains { if case .end = $0 { return true } else { return false } },
                     "no cut but no end record")
        if strict == nil, case .noEndRecord? = s.cut { preconditionFailure("strict failed, salvage found no damage") }
        if let text = (s.cut.flatMap { cut -> String? in if case .damaged(_, let p) = cut { return p.description } else { return nil } }) {
            precondition(!isMultiLine(text), "multi-line description")
        }
        checkReencoding(s)
    } else {
        precondition(streamed == nil, "streaming succeeded where read failed")
        precondition(!isMultiLine(salvageError?.description ?? ""), "multi-line description")
    }
}

/// What was read, written again, must read back the same (when no string
/// needs cutting).
func checkReencoding(_ contents: TraceContents) {
    func fits(_ s: String) -> Bool { s.utf8.count <= TraceFormat.maxStringBytes }
    for r in contents.records {
        switch r {
        case .process(let p): if !fits(p.comm) { return }
        case .mapping(let m): if !fits(m.permissions) || !fits(m.path) { return }
        case .fork(let f): if !fits(f.comm) { return }
        case .exec(let e): if !fits(e.comm) { return }
        case .oomKill(let o): if !fits(o.comm) || !fits(o.constraint) { return }
        case .counters(let c): if !fits(c.comm) { return }
        case .end(let e): if !fits(e.reason) { return }
        default: break
        }
    }
    let h = contents.header
    for s in [h.kernelRelease, h.hostname, h.transparentHugePages, h.selection, h.toolVersion]
    where s.utf8.count > TraceFormat.maxHeaderStringBytes { return }
    let again = TraceFileWriter.encodedFile(header: h, records: contents.records, blockBytes: 512)
    guard let back = try? TraceFileReader.read(bytes: again, path: "re-encoded") else {
        preconditionFailure("re-encoded recording does not read")
    }
    precondition(back.records == contents.records, "re-encoded records differ")
    precondition(back.header == h, "re-encoded header differs")
}

/// Recomputes the checksums of every block (payload lengths are clamped to
/// the bytes present), leaving everything else as the fuzzer made it.
func resealBlocks(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { b in
        guard let base = b.baseAddress else { return }
        var o = TraceFormat.preambleSize
        while b.count - o >= TraceFormat.blockHeaderSize {
            let payloadOffset = o + TraceFormat.blockHeaderSize
            var length = Int(load32(base, o + 16))
            if length > b.count - payloadOffset {
                length = b.count - payloadOffset
                base.storeBytes(of: UInt32(length).littleEndian, toByteOffset: o + 16, as: UInt32.self)
            }
            base.storeBytes(of: traceCRC32(base + payloadOffset, length).littleEndian, toByteOffset: o + 24, as: UInt32.self)
            base.storeBytes(of: traceCRC32(base + o, 28).littleEndian, toByteOffset: o + 28, as: UInt32.self)
            o = payloadOffset + length
        }
    }
}

func isMultiLine(_ s: String) -> Bool {
    s.unicodeScalars.contains { $0 == "\n" || $0 == "\r" || $0 == "\u{2028}" || $0 == "\u{2029}" }
}
