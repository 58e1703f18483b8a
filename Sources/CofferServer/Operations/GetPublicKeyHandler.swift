import CofferCore
import CofferCrypto
import CofferStore
import CofferWire
import Foundation

/// GetPublicKey: the key values are sealed to, and its id: the active generation's, which a rotation changes.
struct GetPublicKeyHandler: OperationHandler {
    let operation = CofferOperation.getPublicKey
    let store: ConnectionStore

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        let keys = store.keys
        var result = Coffer_V1_GetPublicKeyResponse()
        result.publicKey = Data(keys.publicKey)
        result.keyID = keys.keyID.hex
        return .done(.getPublicKey(result))
    }
}
