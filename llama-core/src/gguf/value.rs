//! GGUF metadata values: the value types, scalar values and typed arrays.
//!
//! A metadata value is one of twelve scalar types or an array. Arrays are stored
//! typed ([`ArrayValue`] holds a `Vec<u32>`, a [`StringArray`], …) rather than as a
//! vector of [`Value`]s, so that large arrays (a tokenizer's vocabulary) stay compact.

use std::fmt;

use serde::Serialize;

pub use super::string_array::StringArray;

/// The type of a metadata value, with its GGUF type id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `u8` (id 0).
    U8,
    /// `i8` (id 1).
    I8,
    /// `u16` (id 2).
    U16,
    /// `i16` (id 3).
    I16,
    /// `u32` (id 4).
    U32,
    /// `i32` (id 5).
    I32,
    /// `f32` (id 6).
    F32,
    /// `bool` (id 7), one byte.
    Bool,
    /// UTF-8 string with a `u64` length prefix (id 8).
    String,
    /// Array: element type id, `u64` count, elements (id 9).
    Array,
    /// `u64` (id 10).
    U64,
    /// `i64` (id 11).
    I64,
    /// `f64` (id 12).
    F64,
}

impl ValueType {
    /// The type with GGUF type id `id`.
    pub fn from_id(id: u32) -> Option<ValueType> {
        Some(match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }

    /// The fewest bytes one value of this type takes in a file (the length or
    /// header alone for strings and arrays).
    pub fn min_encoded_size(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::String => 8,
            ValueType::Array => 12,
        }
    }

    /// A short lower-case name: `u8`, `string`, `array`, ….
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value. Serialises to JSON as the bare value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// A string. Invalid UTF-8 in a file is replaced with U+FFFD.
    String(String),
    /// A typed array.
    Array(ArrayValue),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
}

/// A typed metadata array. Serialises to JSON as a plain list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ArrayValue {
    /// `u8` elements.
    U8(Vec<u8>),
    /// `i8` elements.
    I8(Vec<i8>),
    /// `u16` elements.
    U16(Vec<u16>),
    /// `i16` elements.
    I16(Vec<i16>),
    /// `u32` elements.
    U32(Vec<u32>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `f32` elements.
    F32(Vec<f32>),
    /// `bool` elements.
    Bool(Vec<bool>),
    /// String elements, stored end to end.
    String(StringArray),
    /// Nested arrays (each with its own element type).
    Array(Vec<ArrayValue>),
    /// `u64` elements.
    U64(Vec<u64>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// `f64` elements.
    F64(Vec<f64>),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as a `u64`, for any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(u64::from(v)),
            Value::U16(v) => Some(u64::from(v)),
            Value::U32(v) => Some(u64::from(v)),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an `i64`, for any integer type whose value fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(i64::from(v)),
            Value::I16(v) => Some(i64::from(v)),
            Value::I32(v) => Some(i64::from(v)),
            Value::I64(v) => Some(v),
            Value::U8(v) => Some(i64::from(v)),
            Value::U16(v) => Some(i64::from(v)),
            Value::U32(v) => Some(i64::from(v)),
            Value::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an `f64`, for float types (integers are not converted).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(f64::from(v)),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as an `f32`, for float types (an `f64` is rounded).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            // Rounding to the nearest f32 is the intended conversion.
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// The value as a `bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(v) => Some(v),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&ArrayValue> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

impl ArrayValue {
    /// The type of the elements.
    pub fn element_type(&self) -> ValueType {
        match self {
            ArrayValue::U8(_) => ValueType::U8,
            ArrayValue::I8(_) => ValueType::I8,
            ArrayValue::U16(_) => ValueType::U16,
            ArrayValue::I16(_) => ValueType::I16,
            ArrayValue::U32(_) => ValueType::U32,
            ArrayValue::I32(_) => ValueType::I32,
            ArrayValue::F32(_) => ValueType::F32,
            ArrayValue::Bool(_) => ValueType::Bool,
            ArrayValue::String(_) => ValueType::String,
            ArrayValue::Array(_) => ValueType::Array,
            ArrayValue::U64(_) => ValueType::U64,
            ArrayValue::I64(_) => ValueType::I64,
            ArrayValue::F64(_) => ValueType::F64,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayValue::U8(v) => v.len(),
            ArrayValue::I8(v) => v.len(),
            ArrayValue::U16(v) => v.len(),
            ArrayValue::I16(v) => v.len(),
            ArrayValue::U32(v) => v.len(),
            ArrayValue::I32(v) => v.len(),
            ArrayValue::F32(v) => v.len(),
            ArrayValue::Bool(v) => v.len(),
            ArrayValue::String(v) => v.len(),
            ArrayValue::Array(v) => v.len(),
            ArrayValue::U64(v) => v.len(),
            ArrayValue::I64(v) => v.len(),
            ArrayValue::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index` as a [`Value`] (cloned).
    pub fn get(&self, index: usize) -> Option<Value> {
        Some(match self {
            ArrayValue::U8(v) => Value::U8(*v.get(index)?),
            ArrayValue::I8(v) => Value::I8(*v.get(index)?),
            ArrayValue::U16(v) => Value::U16(*v.get(index)?),
            ArrayValue::I16(v) => Value::I16(*v.get(index)?),
            ArrayValue::U32(v) => Value::U32(*v.get(index)?),
            ArrayValue::I32(v) => Value::I32(*v.get(index)?),
            ArrayValue::F32(v) => Value::F32(*v.get(index)?),
            ArrayValue::Bool(v) => Value::Bool(*v.get(index)?),
            ArrayValue::String(v) => Value::String(v.get(index)?.to_owned()),
            ArrayValue::Array(v) => Value::Array(v.get(index)?.clone()),
            ArrayValue::U64(v) => Value::U64(*v.get(index)?),
            ArrayValue::I64(v) => Value::I64(*v.get(index)?),
            ArrayValue::F64(v) => Value::F64(*v.get(index)?),
        })
    }

    /// Every element as a [`Value`] (cloned).
    pub fn values(&self) -> impl Iterator<Item = Value> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// The elements as `u64`s, if every element is a non-negative integer.
    pub fn to_u64_vec(&self) -> Option<Vec<u64>> {
        self.values().map(|v| v.as_u64()).collect()
    }

    /// The elements as `i64`s, if every element is an integer that fits.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        self.values().map(|v| v.as_i64()).collect()
    }

    /// The elements as `f64`s, if the array holds floats.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        self.values().map(|v| v.as_f64()).collect()
    }

    /// The elements as `bool`s: a bool array, or an integer array read as `!= 0`.
    pub fn to_bool_vec(&self) -> Option<Vec<bool>> {
        match self {
            ArrayValue::Bool(v) => Some(v.clone()),
            _ => self.values().map(|v| v.as_i64().map(|n| n != 0)).collect(),
        }
    }

    /// An empty array of the same element type (nested arrays: an empty list).
    pub fn emptied(&self) -> ArrayValue {
        match self {
            ArrayValue::U8(_) => ArrayValue::U8(Vec::new()),
            ArrayValue::I8(_) => ArrayValue::I8(Vec::new()),
            ArrayValue::U16(_) => ArrayValue::U16(Vec::new()),
            ArrayValue::I16(_) => ArrayValue::I16(Vec::new()),
            ArrayValue::U32(_) => ArrayValue::U32(Vec::new()),
            ArrayValue::I32(_) => ArrayValue::I32(Vec::new()),
            ArrayValue::F32(_) => ArrayValue::F32(Vec::new()),
            ArrayValue::Bool(_) => ArrayValue::Bool(Vec::new()),
            ArrayValue::String(_) => ArrayValue::String(StringArray::new()),
            ArrayValue::Array(_) => ArrayValue::Array(Vec::new()),
            ArrayValue::U64(_) => ArrayValue::U64(Vec::new()),
            ArrayValue::I64(_) => ArrayValue::I64(Vec::new()),
            ArrayValue::F64(_) => ArrayValue::F64(Vec::new()),
        }
    }

    /// The elements of a string array.
    pub fn as_strings(&self) -> Option<&StringArray> {
        match self {
            ArrayValue::String(v) => Some(v),
            _ => None,
        }
    }
}

/// How many array elements [`Value`]'s `Display` shows before eliding the rest.
const DISPLAY_ITEMS: usize = 8;

impl fmt::Display for Value {
    /// A one-line rendering; arrays show their first few elements and their length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v:?}"),
            Value::Array(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for ArrayValue {
    /// `[a, b, c, … (N × type)]`, eliding elements past the eighth.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, v) in self.values().take(DISPLAY_ITEMS).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        if self.len() > DISPLAY_ITEMS {
            write!(f, ", … ({} × {})", self.len(), self.element_type())?;
        }
        f.write_str("]")
    }
}

macro_rules! impl_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(
            impl From<$t> for Value {
                fn from(v: $t) -> Value {
                    Value::$variant(v)
                }
            }
            impl From<Vec<$t>> for ArrayValue {
                fn from(v: Vec<$t>) -> ArrayValue {
                    ArrayValue::$variant(v.into())
                }
            }
            impl From<Vec<$t>> for Value {
                fn from(v: Vec<$t>) -> Value {
                    Value::Array(ArrayValue::$variant(v.into()))
                }
            }
        )*
    };
}

impl_from!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64,
);

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_owned())
    }
}

impl From<ArrayValue> for Value {
    fn from(v: ArrayValue) -> Value {
        Value::Array(v)
    }
}

impl From<Vec<ArrayValue>> for ArrayValue {
    fn from(v: Vec<ArrayValue>) -> ArrayValue {
        ArrayValue::Array(v)
    }
}

impl From<Vec<&str>> for ArrayValue {
    fn from(v: Vec<&str>) -> ArrayValue {
        ArrayValue::String(v.into())
    }
}

impl From<Vec<&str>> for Value {
    fn from(v: Vec<&str>) -> Value {
        Value::Array(v.into())
    }
}
