//! netcfg: vznet's engine. The desired state (model), the kernel's state (kernel),
//! the difference as ordered, invertible operations (plan), and their application
//! with verification and rollback (apply).

pub mod apply;
pub mod desired;
#[cfg(feature = "faults")]
pub mod fault;
pub mod kernel;
pub mod link;
pub mod model;
pub mod neighbour;
pub mod op;
pub mod plan;
pub mod rule;
pub mod unit;
