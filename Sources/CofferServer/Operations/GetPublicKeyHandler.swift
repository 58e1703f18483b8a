import CofferCore
import CofferCrypto
import CofferWire
import Foundation

/// GetPublicKey: the key values are sealed to, and its id.
struct GetPublicKeyHandler: OperationHandler {
    let operation = CofferOperation.getPublicKey
    let keys: KeyRing

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        var result = Coffer_V1_GetPublicKeyResponse()
        result.publicKey = Data(keys.publicKey)
        result.keyID = keys.keyID.hex
        return .done(.getPublicKey(result))
    }
}
