//! netcfg: vznet's engine. The desired state (model), the kernel's state (kernel),
//! the difference as ordered, invertible operations (plan), and their application
//! with verification and rollback (apply).

pub mod kernel;
pub mod model;
pub mod desired;
pub mod op;
pub mod plan;
pub mod apply;
