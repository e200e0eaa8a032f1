//! [`wire_enum!`](crate::wire_enum): the newtype over a wire number that both protocol crates
//! write their identifiers with (after rustls's `enum_builder`).

/// Declares a wire number: a newtype over an integer whose known values are named constants.
/// An unknown value is a value like any other, so it round-trips unchanged and can be reported
/// back to the peer; `name()` gives the specification's name of a known one, and `Debug` prints
/// that name (so traces read `CALL_CONNECT_REQUEST`, not `MessageType(1)`).
///
/// `debug = "Type({:#06x})"` prints an unknown value with that format and a known one by its
/// name; `debug = "...", named = "{}(0x{:04X})"` prints a known one with that format (name, value).
///
/// ```
/// sstp_ppp::wire_enum! {
///     /// A colour.
///     pub struct Colour(pub u8);
///     debug = "Colour({:#04x})";
///     /// Red.
///     pub const RED = 1, "RED";
/// }
/// assert_eq!(format!("{:?} {:?}", Colour::RED, Colour(9)), "RED Colour(0x09)");
/// assert_eq!(Colour(1).name(), Some("RED"));
/// ```
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($field_vis:vis $repr:ty);
        debug = $unknown:literal $(, named = $named:literal)?;
        $(
            $(#[$const_meta:meta])*
            $const_vis:vis const $const:ident = $value:expr, $label:literal;
        )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        $vis struct $name($field_vis $repr);

        impl $name {
            $(
                $(#[$const_meta])*
                $const_vis const $const: Self = Self($value);
            )*

            /// The specification's name of this value, if it is a known one.
            #[must_use]
            #[allow(dead_code)]
            $vis fn name(self) -> ::core::option::Option<&'static str> {
                match self {
                    $(Self::$const => ::core::option::Option::Some($label),)*
                    _ => ::core::option::Option::None,
                }
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    ::core::option::Option::Some(name) => {
                        $crate::wire_enum!(@named f, name, self.0 $(, $named)?)
                    }
                    ::core::option::Option::None => write!(f, $unknown, self.0),
                }
            }
        }
    };
    (@named $f:ident, $name:ident, $value:expr) => {
        $f.write_str($name)
    };
    (@named $f:ident, $name:ident, $value:expr, $named:literal) => {
        write!($f, $named, $name, $value)
    };
}
