//! A pickle interpreter that executes nothing: it understands exactly the opcodes and globals
//! a saved tensor or a dict of numbers needs (what `torch.save` writes with protocol 2) and
//! refuses everything else by name. Values are reference counted, so memo references never
//! copy, and nesting is limited, so dropping a value never recurses deeply.

use std::rc::Rc;

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PickleError {
    /// A global outside the allow-list (e.g. `os.system`).
    Forbidden(String),
    /// Anything else: malformed, unsupported or too large, at a byte offset.
    Bad { offset: usize, reason: String },
}

/// The storage classes `torch.save` names, with their element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DType {
    F32,
    F64,
    F16,
    BF16,
}

impl DType {
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
            Self::F16 | Self::BF16 => 2,
        }
    }
}

/// The only globals a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    RebuildTensorV2,
    RebuildParameter,
    OrderedDict,
    Storage(DType),
}

const ALLOWED: &[(&str, &str, Global)] = &[
    (
        "torch._utils",
        "_rebuild_tensor_v2",
        Global::RebuildTensorV2,
    ),
    (
        "torch._utils",
        "_rebuild_parameter",
        Global::RebuildParameter,
    ),
    ("collections", "OrderedDict", Global::OrderedDict),
    ("torch", "FloatStorage", Global::Storage(DType::F32)),
    ("torch", "DoubleStorage", Global::Storage(DType::F64)),
    ("torch", "HalfStorage", Global::Storage(DType::F16)),
    ("torch", "BFloat16Storage", Global::Storage(DType::BF16)),
];

/// A storage a tensor views: `NAME/data/KEY` in the archive.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    pub(crate) dtype: DType,
    pub(crate) key: String,
    pub(crate) numel: u64,
}

/// A tensor as `_rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub(crate) storage: StorageRef,
    pub(crate) offset: u64,
    pub(crate) size: Vec<u64>,
    pub(crate) stride: Vec<u64>,
}

/// A tuple's or list's items, with how deeply containers nest in them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seq {
    pub(crate) items: Vec<Value>,
    depth: usize,
}

impl Seq {
    fn new(items: Vec<Value>) -> Self {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        Self { items, depth }
    }
}

/// A dict's entries in insertion order (a repeated key: the last one counts, as in Python).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Map {
    pub(crate) items: Vec<(Value, Value)>,
    depth: usize,
}

/// A value on the stack.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Map>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Bool(_) => "a bool",
            Self::Int(_) => "an int",
            Self::Float(_) => "a float",
            Self::Str(_) => "a string",
            Self::Tuple(_) => "a tuple",
            Self::List(_) => "a list",
            Self::Dict(_) => "a dict",
            Self::Global(_) => "a class or function",
            Self::Storage(_) => "a storage",
            Self::Tensor(_) => "a tensor",
        }
    }

    /// How deeply containers nest inside this value (0 for a scalar; kept, not walked).
    fn depth(&self) -> usize {
        match self {
            Self::Tuple(v) | Self::List(v) => v.depth,
            Self::Dict(v) => v.depth,
            _ => 0,
        }
    }

    fn tuple(items: Vec<Value>) -> Self {
        Self::Tuple(Rc::new(Seq::new(items)))
    }
}

/// Deepest nesting accepted (a tensor's pickle nests 3 deep).
const MAX_DEPTH: usize = 32;
/// Most values the stack, the memo and copies of shared lists may hold together.
const MAX_VALUES: usize = 1 << 20;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: Vec<Option<Value>>,
    /// Values made so far (the budget against huge or exponential pickles).
    made: usize,
}

/// Runs a pickle and returns the value `STOP` leaves.
pub(crate) fn unpickle(data: &[u8]) -> Result<Value, PickleError> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Vec::new(),
        made: 0,
    };
    m.run()
}

impl Machine<'_> {
    fn bad<T>(&self, reason: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError::Bad {
            offset: self.pos,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return self.bad(format!("truncated: {n} more bytes needed"));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: usize) -> Result<u64, PickleError> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().take(256).position(|&b| b == b'\n') else {
            return self.bad("a GLOBAL name without an end of line (or over 256 bytes)");
        };
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        self.made += 1;
        if self.made > MAX_VALUES || self.stack.len() > MAX_VALUES {
            return self.bad(format!("more than {MAX_VALUES} values"));
        }
        self.check_depth(v.depth())?;
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.bad("pop from an empty stack"),
        }
    }

    /// The values above the last MARK, removing the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(at) = self.marks.pop() else {
            return self.bad("no MARK to pop to");
        };
        if at > self.stack.len() {
            return self.bad("MARK above the stack");
        }
        Ok(self.stack.split_off(at))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        if self.stack.is_empty() {
            return self.bad("empty stack");
        }
        Ok(self.stack.last_mut().expect("not empty"))
    }

    /// Counts `n` copied values against the budget (copy-on-write of a shared container).
    fn spend(&mut self, n: usize) -> Result<(), PickleError> {
        self.made = self.made.saturating_add(n);
        if self.made > MAX_VALUES {
            return self.bad(format!("more than {MAX_VALUES} values"));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let pos = self.pos;
        let top = self.top()?;
        let Value::List(list) = top else {
            let kind = top.kind();
            return Err(PickleError::Bad {
                offset: pos,
                reason: format!("APPEND to {kind}"),
            });
        };
        let copied = if Rc::strong_count(list) > 1 {
            list.items.len()
        } else {
            0
        };
        let l = Rc::make_mut(list);
        for item in items {
            l.depth = l.depth.max(1 + item.depth());
            l.items.push(item);
        }
        let depth = l.depth;
        self.spend(copied)?;
        self.check_depth(depth)
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if items.len() % 2 != 0 {
            return self.bad("SETITEMS with an odd number of values");
        }
        let pos = self.pos;
        let top = self.top()?;
        let Value::Dict(dict) = top else {
            let kind = top.kind();
            return Err(PickleError::Bad {
                offset: pos,
                reason: format!("SETITEM on {kind}"),
            });
        };
        let copied = if Rc::strong_count(dict) > 1 {
            dict.items.len()
        } else {
            0
        };
        let d = Rc::make_mut(dict);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.depth = d.depth.max(1 + k.depth().max(v.depth()));
            d.items.push((k, v));
        }
        let depth = d.depth;
        self.spend(copied)?;
        self.check_depth(depth)
    }

    fn check_depth(&self, depth: usize) -> Result<(), PickleError> {
        if depth > MAX_DEPTH {
            return self.bad(format!("containers nested deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<Value, PickleError> {
        ALLOWED
            .iter()
            .find(|(m, n, _)| *m == module && *n == name)
            .map(|(_, _, g)| Value::Global(*g))
            .ok_or_else(|| PickleError::Forbidden(format!("{module}.{name}")))
    }

    fn memo_get(&mut self, i: usize) -> Result<(), PickleError> {
        let v = self.memo.get(i).cloned().flatten();
        match v {
            Some(v) => self.push(v),
            None => self.bad(format!("memo entry {i} was never stored")),
        }
    }

    fn memo_put(&mut self, i: usize) -> Result<(), PickleError> {
        if i > MAX_VALUES {
            return self.bad(format!("memo index {i} is too large"));
        }
        let Some(v) = self.stack.last().cloned() else {
            return self.bad("PUT from an empty stack");
        };
        if self.memo.len() <= i {
            self.memo.resize(i + 1, None);
        }
        self.memo[i] = Some(v);
        Ok(())
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return self.bad(format!("pickle protocol {proto}"));
                    }
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b')' => self.push(Value::tuple(Vec::new()))?,
                b']' => self.push(Value::List(Rc::new(Seq::new(Vec::new()))))?,
                b'}' => self.push(Value::Dict(Rc::new(Map {
                    items: Vec::new(),
                    depth: 1,
                })))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return self.bad(format!("TUPLE{n} on a stack of {}", self.stack.len()));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::tuple(items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.le(4)? as u32 as i32;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.le(2)?;
                    self.push(Value::Int(v as i64))?;
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    if n > 8 {
                        return self.bad(format!("a {n}-byte integer (acap reads up to 8)"));
                    }
                    let raw = self.le(n)?;
                    // Two's complement in n bytes, sign-extended.
                    let v = if n == 0 {
                        0
                    } else {
                        let shift = 64 - 8 * n as u32;
                        ((raw << shift) as i64) >> shift
                    };
                    self.push(Value::Int(v))?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.push(Value::Float(v))?;
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        0x8c => u64::from(self.u8()?),
                        b'X' => self.le(4)?,
                        _ => self.le(8)?,
                    };
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    let bytes = self.take(n)?;
                    let Ok(s) = std::str::from_utf8(bytes) else {
                        return self.bad("a string that is not UTF-8");
                    };
                    let s: Rc<str> = Rc::from(s);
                    self.push(Value::Str(s))?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(&module, &name)?;
                    self.push(g)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return self.bad("STACK_GLOBAL without two strings");
                    };
                    let g = self.global(&module, &name)?;
                    self.push(g)?;
                }
                b'q' => {
                    let i = usize::from(self.u8()?);
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.le(4)? as usize;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = usize::from(self.u8()?);
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.le(4)? as usize;
                    self.memo_get(i)?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.persistent(&pid)?;
                    self.push(Value::Storage(Rc::new(s)))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(&f, &args)?;
                    self.push(v)?;
                }
                b'b' => {
                    // State for an OrderedDict or a tensor (hooks, metadata): not needed.
                    let _state = self.pop()?;
                    let top = self.top()?;
                    if !matches!(top, Value::Dict(_) | Value::Tensor(_)) {
                        let kind = top.kind();
                        return self.bad(format!("BUILD on {kind}"));
                    }
                }
                other => {
                    self.pos -= 1;
                    return self.bad(format!(
                        "pickle opcode 0x{other:02x} is not one a saved tensor or a dict of \
                         numbers uses"
                    ));
                }
            }
        }
    }

    /// `('storage', StorageClass, key, location, numel)`.
    fn persistent(&self, pid: &Value) -> Result<StorageRef, PickleError> {
        let Value::Tuple(t) = pid else {
            return self.bad(format!("a persistent id that is {}", pid.kind()));
        };
        match t.items.as_slice() {
            [
                Value::Str(tag),
                Value::Global(Global::Storage(dtype)),
                Value::Str(key),
                Value::Str(_location),
                Value::Int(numel),
            ] if &**tag == "storage" && *numel >= 0 => Ok(StorageRef {
                dtype: *dtype,
                key: key.to_string(),
                numel: *numel as u64,
            }),
            _ => self.bad(
                "a persistent id that is not ('storage', a float storage class, key, location, \
                 numel)",
            ),
        }
    }

    fn ints(&self, v: &Value, what: &str) -> Result<Vec<u64>, PickleError> {
        let Value::Tuple(t) = v else {
            return self.bad(format!("tensor {what} is {}, expected a tuple", v.kind()));
        };
        t.items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Ok(*i as u64),
                other => self.bad(format!(
                    "tensor {what} holds {other:?}, expected non-negative ints"
                )),
            })
            .collect()
    }

    fn reduce(&self, f: &Value, args: &Value) -> Result<Value, PickleError> {
        let Value::Tuple(a) = args else {
            return self.bad(format!("REDUCE arguments are {}", args.kind()));
        };
        let a = &a.items;
        match f {
            Value::Global(Global::OrderedDict) if a.is_empty() => Ok(Value::Dict(Rc::new(Map {
                items: Vec::new(),
                depth: 1,
            }))),
            Value::Global(Global::RebuildTensorV2) if (6..=7).contains(&a.len()) => {
                let Value::Storage(storage) = &a[0] else {
                    return self.bad(format!("_rebuild_tensor_v2 of {}", a[0].kind()));
                };
                let Value::Int(offset) = a[1] else {
                    return self.bad("a tensor storage offset that is not an int");
                };
                if offset < 0 {
                    return self.bad(format!("tensor storage offset {offset}"));
                }
                let size = self.ints(&a[2], "size")?;
                let stride = self.ints(&a[3], "stride")?;
                if size.len() != stride.len() {
                    return self.bad(format!(
                        "tensor size {size:?} and stride {stride:?} differ in length"
                    ));
                }
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage: (**storage).clone(),
                    offset: offset as u64,
                    size,
                    stride,
                })))
            }
            Value::Global(Global::RebuildParameter) if a.len() == 3 => match &a[0] {
                t @ Value::Tensor(_) => Ok(t.clone()),
                other => self.bad(format!("_rebuild_parameter of {}", other.kind())),
            },
            Value::Global(g) => self.bad(format!("{g:?} called with {} arguments", a.len())),
            other => self.bad(format!("REDUCE calls {}", other.kind())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_code_execution_by_name() {
        // cos\nsystem\n(S'echo hi'\ntR. in protocol 2 spelling.
        let p = b"\x80\x02cos\nsystem\nq\x00X\x07\x00\x00\x00echo hi\x85R.";
        assert_eq!(unpickle(p), Err(PickleError::Forbidden("os.system".into())));
        let p = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        assert_eq!(
            unpickle(p),
            Err(PickleError::Forbidden("builtins.eval".into()))
        );
    }

    #[test]
    fn dicts_of_numbers() {
        // {21: -2.5, 3: 1}
        let mut p = b"\x80\x02}q\x00(K\x15G".to_vec();
        p.extend((-2.5f64).to_be_bytes());
        p.extend(b"K\x03K\x01u.");
        let Value::Dict(d) = unpickle(&p).unwrap() else {
            panic!("not a dict");
        };
        assert_eq!(
            d.items.as_slice(),
            &[
                (Value::Int(21), Value::Float(-2.5)),
                (Value::Int(3), Value::Int(1))
            ]
        );
    }

    #[test]
    fn deep_nesting_and_truncation_are_errors() {
        let mut p = b"\x80\x02K\x01".to_vec();
        p.extend(std::iter::repeat_n(0x85u8, 100_000));
        p.push(b'.');
        let e = unpickle(&p).unwrap_err();
        assert!(
            matches!(&e, PickleError::Bad { reason, .. } if reason.contains("nested")),
            "{e:?}"
        );
        assert!(matches!(
            unpickle(b"\x80\x02X\xff\xff\x00\x00ab"),
            Err(PickleError::Bad { .. })
        ));
        assert!(matches!(unpickle(b""), Err(PickleError::Bad { .. })));
        // Negative one in two bytes (LONG1), and a memo reference.
        let Value::Tuple(t) = unpickle(b"\x8a\x02\xff\xffq\x01h\x01\x86.").unwrap() else {
            panic!();
        };
        assert_eq!(t.items.as_slice(), &[Value::Int(-1), Value::Int(-1)]);
    }

    #[test]
    fn exponential_memo_copies_hit_the_budget() {
        // l = []; repeat: l2 = memo(l) + l appended to itself (copy-on-write of shared lists).
        let mut p = b"\x80\x02]q\x00".to_vec();
        for _ in 0..40 {
            p.extend(b"h\x00(h\x00h\x00h\x00h\x00e0");
        }
        p.push(b'.');
        // Either refused by the budget or finished within it: never runs away.
        let _ = unpickle(&p);
    }
}
