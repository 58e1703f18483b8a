import CofferCore
import CofferStore
import CofferWire

/// RotateKey: a new key generation, active from its commit; the re-encryption service moves every record to
/// it afterwards.
struct RotateKeyHandler: OperationHandler {
    let operation = CofferOperation.rotateKey

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        .write(
            .init(apply: { writer, _ in
                var result = Coffer_V1_RotateKeyResponse()
                result.generation = Coffer_V1_KeyGeneration(try writer.rotateKey())
                return .rotateKey(result)
            })
        )
    }
}

/// KeyStatus: every generation and what depends on it. A scan of every record, so it runs off the event loop.
struct KeyStatusHandler: OperationHandler {
    let operation = CofferOperation.keyStatus

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        .scan { reader in .keyStatus(Coffer_V1_KeyStatusResponse(try reader.keyStatus())) }
    }
}

/// RetireKey: retires a generation nothing depends on any more.
struct RetireKeyHandler: OperationHandler {
    let operation = CofferOperation.retireKey

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .retireKey(let retire) = request else { throw mismatch() }
        guard retire.generation > 0 else {
            throw CofferError(.invalidArgument, "generation must be the number of a key generation (coffer key status)")
        }
        let number = retire.generation
        return .write(
            .init(apply: { writer, _ in
                var result = Coffer_V1_RetireKeyResponse()
                result.generation = Coffer_V1_KeyGeneration(try writer.retireKey(number))
                return .retireKey(result)
            })
        )
    }
}
