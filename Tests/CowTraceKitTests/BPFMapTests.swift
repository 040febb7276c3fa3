import CBPF
@testable import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest

/// The typed map and program handles over the real embedded BPF objects:
/// every handle the tracers use opens with the sizes of its Swift types, and
/// a wrong name or a wrong-sized type fails loudly, naming what is wrong.
final class BPFMapTests: XCTestCase {
    /// Possible CPUs as the kernel lists them (/sys/devices/system/cpu/possible,
    /// e.g. "0-3" or "0,2-5"), the truth for per-CPU maps, read without libbpf.
    private func possibleCPUs() throws -> Int {
        let text = try String(contentsOfFile: "/sys/devices/system/cpu/possible", encoding: .utf8)
        var count = 0
        for part in text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            count += bounds.count == 2 ? bounds[1] - bounds[0] + 1 : 1
        }
        return count
    }

    private func cowtraceObject() throws -> BPFObject {
        try BPFObject(bytes: EmbeddedBPF.cowtrace, name: "cowtrace")
    }

    func testEveryCowTraceHandleOpensWithItsSwiftSizes() throws {
        try requireBPF()
        let maps = try CowTraceMaps(try cowtraceObject())
        // Sizes as bpf/cowtrace.h and the map definitions declare them.
        XCTAssertEqual(maps.processSlots.keySize, 4)
        XCTAssertEqual(maps.processSlots.valueSize, MemoryLayout<cowtrace_process_slot>.size)
        XCTAssertEqual(maps.pidSlots.valueSize, 8, "two u32 slots per element")
        XCTAssertEqual(maps.tidSlots.valueSize, MemoryLayout<cowtrace_pid_slot_pair>.size)
        XCTAssertEqual(maps.threadSlots.valueSize, MemoryLayout<cowtrace_process_slot>.size)
        XCTAssertEqual(maps.exitedThreads.valueSize, MemoryLayout<cowtrace_process_slot>.size)
        XCTAssertEqual(maps.exitedCounters.valueSize, MemoryLayout<cowtrace_pid_counters>.size)
        XCTAssertEqual(maps.forkRecords.valueSize, MemoryLayout<cowtrace_fork_record>.size)
        XCTAssertEqual(maps.pidInfo.valueSize, MemoryLayout<cowtrace_pid_info>.size)
        XCTAssertEqual(maps.histograms.keySize, MemoryLayout<cowtrace_hist_key>.size)
        XCTAssertEqual(maps.histograms.valueSize, MemoryLayout<cowtrace_hist>.size)
        XCTAssertEqual(maps.stackCopies.keySize, MemoryLayout<cowtrace_stack_key>.size)
        XCTAssertEqual(maps.stackCopies.valueSize, 8)
        XCTAssertEqual(maps.stacks.valueSize, 127 * 8, "127 return addresses")
        XCTAssertEqual(maps.stacks.valuesPerKey, 127)
        XCTAssertTrue(maps.drops.perCPU)
        XCTAssertEqual(maps.drops.valueSize, 8, "a per-CPU map's value size is per CPU")
        XCTAssertEqual(maps.drops.valuesPerKey, try possibleCPUs())
        XCTAssertFalse(maps.processSlots.perCPU)
        XCTAssertEqual(maps.processSlots.valuesPerKey, 1)
        XCTAssertEqual(maps.events.slots, 1, "bpf/cowtrace_record.bpf.h's array of rings: one slot until sized to the CPUs")
        XCTAssertTrue(maps.eventBatches.perCPU)
        XCTAssertEqual(maps.eventBatches.valueSize, MemoryLayout<cowtrace_event_batch>.size)
        XCTAssertEqual(maps.eventBatches.valueSize, 40 + 64 * 40, "a 40-byte header and 64 short events")
        XCTAssertEqual(maps.registerProcess.name, "register_process")
    }

    func testEveryOOMHandleOpensWithItsSwiftSizes() throws {
        try requireBPF()
        let maps = try OOMMaps(try BPFObject(bytes: EmbeddedBPF.oom, name: "oom"))
        XCTAssertEqual(maps.drops.keySize, 4)
        XCTAssertEqual(maps.drops.valueSize, 8)
        XCTAssertEqual(maps.drops.valuesPerKey, try possibleCPUs())
        XCTAssertEqual(maps.events.maxEntries, 256 << 10, "bpf/oom.bpf.c's ring size")
    }

    func testUnknownMapNameThrowsNamingMapAndObject() throws {
        try requireBPF()
        let object = try cowtraceObject()
        XCTAssertThrowsError(try object.map("proces_slots", key: UInt32.self, value: cowtrace_process_slot.self)) { error in
            guard case TracerError.unknownMap(let map, let objectName)? = error as? TracerError else {
                return XCTFail("expected unknownMap, got \(error)")
            }
            XCTAssertEqual(map, "proces_slots")
            XCTAssertEqual(objectName, "cowtrace")
            XCTAssertTrue("\(error)".contains("no map named proces_slots"), "\(error)")
            XCTAssertTrue("\(error)".contains("bpf/cowtrace.bpf.c"), "\(error)")
        }
        XCTAssertThrowsError(try object.ringBuffer("event")) { error in
            guard case TracerError.unknownMap("event", "cowtrace")? = error as? TracerError else {
                return XCTFail("expected unknownMap, got \(error)")
            }
        }
        // The per-CPU rings are an array of maps, not one ring, and the other way round.
        XCTAssertThrowsError(try object.ringBuffer("events")) { error in
            guard case TracerError.mapTypeMismatch("events", "cowtrace", "a ring buffer", _)? = error as? TracerError else {
                return XCTFail("expected mapTypeMismatch, got \(error)")
            }
        }
        XCTAssertThrowsError(try BPFPerCPURingBuffers(object, "drops")) { error in
            guard case TracerError.mapTypeMismatch("drops", "cowtrace", "an array of ring buffers", _)? = error as? TracerError else {
                return XCTFail("expected mapTypeMismatch, got \(error)")
            }
        }
    }

    func testUnknownProgramNameThrowsNamingIt() throws {
        try requireBPF()
        let object = try cowtraceObject()
        XCTAssertThrowsError(try object.program("register_proces")) { error in
            guard case TracerError.unknownProgram("register_proces", "cowtrace")? = error as? TracerError else {
                return XCTFail("expected unknownProgram, got \(error)")
            }
        }
        // A misspelt program in a tier's plan fails before load instead of loading nothing.
        XCTAssertThrowsError(try object.enableOnly(["tp_sched_process_fork", "fentry_do_wp_pag"])) { error in
            guard case TracerError.unknownProgram("fentry_do_wp_pag", "cowtrace")? = error as? TracerError else {
                return XCTFail("expected unknownProgram, got \(error)")
            }
        }
    }

    func testWrongValueSizeThrowsBothSizes() throws {
        try requireBPF()
        let object = try cowtraceObject()
        // drops holds a u64 per CPU: a u32 is 4 bytes short.
        XCTAssertThrowsError(try object.map("drops", key: UInt32.self, value: UInt32.self)) { error in
            guard case TracerError.mapSizeMismatch(let map, let objectName, let part, let bpfSize, _, let swiftSize)? = error as? TracerError else {
                return XCTFail("expected mapSizeMismatch, got \(error)")
            }
            XCTAssertEqual(map, "drops")
            XCTAssertEqual(objectName, "cowtrace")
            XCTAssertEqual(part, "per-CPU value")
            XCTAssertEqual(bpfSize, 8)
            XCTAssertEqual(swiftSize, 4)
            XCTAssertTrue("\(error)".contains("8 bytes") && "\(error)".contains("4 bytes"), "\(error)")
        }
        // pid_info's value read as the wrong struct.
        XCTAssertThrowsError(try object.map("pid_info", key: UInt32.self, value: cowtrace_pid_counters.self)) { error in
            guard case TracerError.mapSizeMismatch("pid_info", "cowtrace", "value", MemoryLayout<cowtrace_pid_info>.size,
                                                   _, MemoryLayout<cowtrace_pid_counters>.size)? = error as? TracerError else {
                return XCTFail("expected mapSizeMismatch, got \(error)")
            }
        }
        // A stack of 64 frames is not the map's 127.
        XCTAssertThrowsError(try object.map("stacks", key: UInt32.self, value: UInt64.self, valueElements: 64)) { error in
            guard case TracerError.mapSizeMismatch("stacks", _, "value", 1016, _, 512)? = error as? TracerError else {
                return XCTFail("expected mapSizeMismatch, got \(error)")
            }
        }
    }

    func testWrongKeySizeThrowsBothSizes() throws {
        try requireBPF()
        XCTAssertThrowsError(try cowtraceObject().map("process_slots", key: UInt64.self, value: cowtrace_process_slot.self)) { error in
            guard case TracerError.mapSizeMismatch("process_slots", "cowtrace", "key", 4, "UInt64", 8)? = error as? TracerError else {
                return XCTFail("expected mapSizeMismatch, got \(error)")
            }
        }
    }

    func testRingBufferReadAsKeyedMapIsRefused() throws {
        try requireBPF()
        let oom = try BPFObject(bytes: EmbeddedBPF.oom, name: "oom")
        XCTAssertThrowsError(try oom.map("events", key: UInt32.self, value: UInt64.self)) { error in
            guard case TracerError.mapTypeMismatch("events", "oom", _, "a ring buffer")? = error as? TracerError else {
                return XCTFail("expected mapTypeMismatch, got \(error)")
            }
        }
        // cowtrace's per-CPU rings: an array of maps, whose 4-byte values are descriptors.
        XCTAssertThrowsError(try cowtraceObject().map("events", key: UInt32.self, value: UInt32.self)) { error in
            guard case TracerError.mapTypeMismatch("events", "cowtrace", _, _)? = error as? TracerError else {
                return XCTFail("expected mapTypeMismatch, got \(error)")
            }
        }
        XCTAssertThrowsError(try cowtraceObject().ringBuffer("drops")) { error in
            guard case TracerError.mapTypeMismatch("drops", "cowtrace", _, _)? = error as? TracerError else {
                return XCTFail("expected mapTypeMismatch, got \(error)")
            }
        }
    }

    /// A live tracer registers this process through the typed program handle;
    /// the typed map handles then read back what the kernel wrote: its slot
    /// holds our pid (getpid) and pid_info its comm (/proc/self/comm).
    func testTypedHandlesReadWhatTheKernelWrote() throws {
        try requireBPF()
        let me = getpid()
        var options = TracerOptions()
        options.selection.pids = [me]
        let tracer = try CowTracer(options: options)
        let maps = tracer.maps
        let pair = try XCTUnwrap(maps.pidSlots.lookup(UInt32(me) >> 1), "pid_slots has no element for pid \(me)")
        let slot = me & 1 == 0 ? pair.slot.0 : pair.slot.1
        XCTAssertNotEqual(slot, 0, "register_process claimed no slot")
        let raw = try XCTUnwrap(maps.processSlots.lookup(slot))
        XCTAssertEqual(raw.id, UInt32(me))
        XCTAssertEqual(raw.tgid, UInt32(me))
        let info = try XCTUnwrap(maps.pidInfo.lookup(UInt32(me)))
        var comm = info.comm
        let name = withUnsafeBytes(of: &comm) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let procComm = try String(contentsOfFile: "/proc/self/comm", encoding: .utf8).trimmingCharacters(in: .newlines)
        XCTAssertEqual(name, procComm)
        XCTAssertTrue(try maps.pidInfo.keys().contains(UInt32(me)))
        XCTAssertEqual(try maps.drops.values(0).count, try possibleCPUs())

        // After load the sizes are fixed: libbpf refuses, and says so.
        XCTAssertThrowsError(try maps.processSlots.setMaxEntries(8)) { error in
            guard case TracerError.mapAccess("process_slots", _, _)? = error as? TracerError else {
                return XCTFail("expected mapAccess, got \(error)")
            }
        }
        tracer.close()
        XCTAssertThrowsError(try maps.pidInfo.keys()) { error in
            XCTAssertTrue("\(error)".contains("closed"), "\(error)")
        }
        XCTAssertNil(maps.processSlots.lookup(slot))
    }
}
