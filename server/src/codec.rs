//! The protobuf codec of the generated services (build.rs names it): prost's, except that a
//! message that does not decode (bad wire format, invalid UTF-8 in a string field) is
//! INVALID_ARGUMENT. tonic-prost reports it as INTERNAL, which tells a client the server broke
//! when the client sent a bad request, and makes our INTERNAL alerts fire on client bugs.
//!
//! Mapped here, where prost's typed `DecodeError` is at hand, rather than by rewriting INTERNAL
//! responses by their message text in a layer: no text matching, and it holds for every
//! message of a stream, not only for unary calls answered in headers. gRPC framing errors
//! (compressed flag, truncated frame) stay INTERNAL, as the gRPC spec asks.
//!
//! The generated clients (tests, benches) share the codec, so a response they cannot decode
//! reads INVALID_ARGUMENT too; its message still says that decoding failed.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstEncoder};

#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(PhantomData)
    }
}

/// Decodes `U` with prost; a decode failure is the sender's invalid argument.
#[derive(Debug, Clone, Default)]
pub struct ProtoDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // prost's message names the field path and the reason, never the bytes.
        U::decode(buf).map(Some).map_err(|e| Status::invalid_argument(format!("the message does not decode: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
